from skinclf.commands.bench import main  # python -m skinclf.bench

if __name__ == "__main__":
    main()
