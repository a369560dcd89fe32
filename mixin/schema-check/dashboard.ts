// The types tests/stack/test_mixin.py checks every generated dashboard against, with `tsc --noEmit`:
// Grafana's published dashboard schema (@grafana/schema), as JSON can spell it.
import type { AnnotationQuery, Dashboard } from '@grafana/schema';

// Grafana's schema declares some fields as TypeScript string enums (FieldColorModeId,
// ThresholdsMode, MappingType...), which only the enum's members satisfy, not the equal strings
// a JSON file holds. Each enum becomes the union of its values; nothing else is loosened, so a
// misspelt value, a wrong type or an unknown key is still an error.
export type AsJson<T> = T extends string
  ? `${T}`
  : T extends readonly (infer U)[]
    ? AsJson<U>[]
    : T extends object
      ? { [K in keyof T]: AsJson<T[K]> }
      : T;

// A data source's own query fields: the schema leaves them open in panel targets
// (Record<string, unknown>); an annotation keeps a Prometheus query's fields (expr, step,
// titleFormat...) beside the schema's, so they are open there too, the schema's fields typed.
type DataSourceFields = Record<string, unknown>;

export type CheckedDashboard = Omit<AsJson<Dashboard>, 'annotations'> & {
  annotations?: { list?: (AsJson<AnnotationQuery> & DataSourceFields)[] };
};

// What grafana.com's dashboard import adds (grafana/dashboards/import/): the inputs asked for
// on import and the plugins the dashboard needs. Grafana's schema has no type for them.
export interface ImportInput {
  name: string;
  label: string;
  description: string;
  type: 'datasource';
  pluginId: string;
  pluginName: string;
}

export interface ImportRequirement {
  type: 'grafana' | 'datasource' | 'panel';
  id: string;
  name: string;
  version: string;
}

export type ImportableDashboard = CheckedDashboard & {
  __inputs: ImportInput[];
  __elements: Record<string, never>;
  __requires: ImportRequirement[];
};
