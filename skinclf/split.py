"""``python -m skinclf.split``: see :mod:`skinclf.commands.split`."""

from skinclf.commands.split import main

if __name__ == "__main__":
    main()
