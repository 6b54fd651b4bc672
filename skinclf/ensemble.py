from skinclf.commands.ensemble import main  # python -m skinclf.ensemble

if __name__ == "__main__":
    main()
