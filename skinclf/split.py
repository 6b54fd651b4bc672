from skinclf.commands.split import main  # python -m skinclf.split

if __name__ == "__main__":
    main()
