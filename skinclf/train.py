from skinclf.commands.train import main  # python -m skinclf.train

if __name__ == "__main__":
    main()
