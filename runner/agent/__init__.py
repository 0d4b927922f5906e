"""The coding agent: tools over the sandbox, the run state, the model, and a session that ties them together.
Imports smolagents/litellm; keep it off the path of `smol --help`."""
