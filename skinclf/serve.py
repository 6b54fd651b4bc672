from skinclf.commands.serve import main  # python -m skinclf.serve

if __name__ == "__main__":
    main()
