from skinclf.commands.predict import main  # python -m skinclf.predict

if __name__ == "__main__":
    main()
