from skinclf.commands.export import main  # python -m skinclf.export

if __name__ == "__main__":
    main()
