(import 'overview.libsonnet') + (import 'exporter.libsonnet')
