"""DVC stage entry point; the command lives in prunelab.commands.evaluate (also `prunelab evaluate`)."""

from prunelab.commands.evaluate import app

if __name__ == "__main__":
    app()
