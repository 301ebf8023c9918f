// Package fhir holds what Carnet knows about FHIR R4 itself: parsing and
// validating resources kept whole as JSON, the search parameters Carnet
// indexes, extraction of index entries, parsing of search queries, Bundles
// and OperationOutcome errors.
//
// Resources are handled as generic JSON objects (map[string]any decoded with
// json.Number) so that every element a client sends — extensions, contained
// resources, value[x], elements Carnet does not model — survives a round trip.
// Only what Carnet reads is checked with typed code.
package fhir
