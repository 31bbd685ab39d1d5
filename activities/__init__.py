"""Step kinds with side effects, run as Temporal activities, and the plugin registry."""
