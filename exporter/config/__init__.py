"""Configuration, the leaf layer: values and their validation, Settings, the config file, the web
config file and the webhook settings. Imports nothing else of the exporter."""
