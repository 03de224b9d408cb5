"""Audio front end of the talking avatar: 16 kHz mono sources, log-mel features, voice activity."""
