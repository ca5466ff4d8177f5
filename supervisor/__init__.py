"""supervisor: an asyncio supervisor for containerd."""
