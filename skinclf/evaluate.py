from skinclf.commands.evaluate import main  # python -m skinclf.evaluate

if __name__ == "__main__":
    main()
