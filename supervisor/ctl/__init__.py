"""factoryctl: one module per command, listed in `commands.COMMANDS`."""
