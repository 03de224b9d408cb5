"""The weight-free mesh renderer and its expression rig."""
