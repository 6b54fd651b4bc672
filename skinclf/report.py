from skinclf.commands.report import main  # python -m skinclf.report

if __name__ == "__main__":
    main()
