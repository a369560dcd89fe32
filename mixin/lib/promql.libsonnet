// Selector and label-list helpers shared by the rules and the alerts.
{
  // The exporter's job selector, with more matchers: {job=~"...", reason="x"}.
  selector(config, extra=''):
    '{' + config.eightbyeightSelector + (if extra == '' then '' else ', ' + extra) + '}',

  // A label list for by (...) and on (...) that always keeps the cluster label first.
  labels(config, names): std.join(', ', [config.clusterLabel] + names),
}
