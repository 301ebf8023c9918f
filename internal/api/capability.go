package api

import (
	"carnet/internal/fhir"
)

// capabilityStatement describes exactly what the server supports, from the
// same tables the handlers use.
func capabilityStatement(version string) []byte {
	if version == "" {
		version = "dev"
	}
	var resources []any
	for _, t := range fhir.StoredTypes() {
		var params []any
		params = append(params,
			map[string]any{"name": "_id", "type": "token"},
			map[string]any{"name": "_lastUpdated", "type": "date"})
		var includes []any
		for _, p := range fhir.Params(t.Name) {
			sp := map[string]any{"name": p.Name, "type": p.Type.String()}
			if p.Doc != "" {
				sp["documentation"] = p.Doc
			}
			params = append(params, sp)
			if p.Type == fhir.Reference {
				includes = append(includes, t.Name+":"+p.Name)
			}
		}
		res := map[string]any{
			"type": t.Name,
			"interaction": []any{
				map[string]any{"code": "read"}, map[string]any{"code": "vread"}, map[string]any{"code": "update"},
				map[string]any{"code": "delete"}, map[string]any{"code": "history-instance"},
				map[string]any{"code": "create"}, map[string]any{"code": "search-type"},
			},
			"versioning":        "versioned-update",
			"readHistory":       true,
			"updateCreate":      true,
			"conditionalCreate": false,
			"conditionalUpdate": false,
			"conditionalDelete": "not-supported",
			"searchParam":       params,
		}
		if len(includes) > 0 {
			res["searchInclude"] = includes
		}
		resources = append(resources, res)
	}
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         "2026-11-24",
		"kind":         "instance",
		"fhirVersion":  "4.0.1",
		"format":       []any{"application/fhir+json", "json"},
		"software":     map[string]any{"name": "Carnet", "version": version},
		"implementation": map[string]any{
			"description": "Carnet patient-record server. Search: _count (default 20, max 500), _sort (_id, _lastUpdated, string and date parameters; resources without the value last), _include and _revinclude of reference parameters, _summary=count, opaque paging. Unknown parameters are ignored and reported unless Prefer: handling=strict. Whole-system interactions: transaction and batch.",
		},
		"rest": []any{map[string]any{
			"mode":     "server",
			"resource": resources,
			"security": map[string]any{
				"service": []any{map[string]any{"coding": []any{map[string]any{
					"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}}}},
				"description": "Bearer tokens from POST /auth/token (username, password and a TOTP code: MFA is mandatory), 15 minutes, SMART v2 user/ scopes that narrow the account's roles. Access follows the care relationship; see docs/access.md.",
			},
			"interaction": []any{map[string]any{"code": "transaction"}, map[string]any{"code": "batch"}},
		}},
	}
	b, _ := fhir.Marshal(cs)
	return b
}
