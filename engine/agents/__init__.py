"""Avatars for voice-agent frameworks: an agent's synthesised voice in, the speaking portrait out.

- :mod:`.lipsync`: the framework-free part: a voice timeline of video frames (any sample rate in,
  motion through ``engine.talk.SpeechMotion``, the voice delayed by a fixed number of frames so each
  frame's audio leaves with the image whose mouth shows it), rendered one frame at a time.
- :mod:`.pipecat`: :class:`~pirender.engine.agents.pipecat.PirenderAvatar`, a pipecat
  ``FrameProcessor`` built on it (``pip install 'pirender-live[pipecat]'``).

Importing this package imports neither pipecat nor torch models.
"""
