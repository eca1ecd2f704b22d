"""The control plane: settings, records, storage, validation, dispatch, the API and the CLI."""
