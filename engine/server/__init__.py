"""The streaming server: HTTP + websocket signaling + WebRTC (aiortc)."""
