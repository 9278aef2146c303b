"""Bar features, the observation-layout registry and feature scaling."""
