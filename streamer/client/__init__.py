"""Client code shared by `streamer stream` and the programs in clients/."""
