"""``python -m skinclf.predict``: see :mod:`skinclf.commands.predict`."""

from skinclf.commands.predict import main

if __name__ == "__main__":
    main()
