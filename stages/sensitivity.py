"""DVC stage entry point; the command lives in prunelab.commands.sensitivity (also `prunelab sensitivity`)."""

from prunelab.commands.sensitivity import app

if __name__ == "__main__":
    app()
