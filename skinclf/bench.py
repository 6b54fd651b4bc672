"""``python -m skinclf.bench``: see :mod:`skinclf.commands.bench`."""

from skinclf.commands.bench import main

if __name__ == "__main__":
    main()
