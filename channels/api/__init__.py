"""The channels app's HTTP surface: the client API apps call (in-app messages, content cards,
engagement) and the hosted pages people reach from messages."""
