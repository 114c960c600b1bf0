// Package features turns raw transaction records into the dense form the
// autoencoder learns from. It reads bytes it is handed (CSV, JSON Lines,
// Kafka message values) and does no other I/O.
//
// A Schema gives each field a kind: numeric, categorical, timestamp, id
// (kept for keys and output, never learned) or ignored. InferSchema
// proposes one from a sample, with a reason for each choice: label-like
// columns, personal data, constant and empty columns are ignored; long
// integer codes, identifier-named columns (card_id, CUSTOMER_ID, cc_num)
// with more values than a category keeps, text whose 50 most frequent
// values cover under 10% of the rows, and numbers that move with the event
// time (time counters, whatever the order of the rows) are ids;
// timestamps are recognised in RFC 3339, "2006-01-02 15:04:05" and similar
// layouts and as Unix seconds or milliseconds.
//
// An Encoder is fitted on rows:
//
//	numeric:     v' = (T(v) − median) / (IQR / 1.349), T = sign·log1p|v| for
//	             heavy-tailed non-negative fields (amounts), else identity;
//	             the standard deviation replaces a zero IQR
//	categorical: the MaxLevels most frequent values seen at least MinCount
//	             times; anything else is OTHER, empty or null is MISSING
//	timestamp:   sin and cos of hour of day and of day of week, in the
//	             offset the timestamp was written in
//
// Every field may be missing; missingness is encoded (a flag, or the
// MISSING level), never an error. Encode writes into caller-provided
// slices and allocates nothing; an Encoder is safe for concurrent use.
//
// RowDecoder extracts chosen keys from flat JSON objects without
// allocating, for the one-message-at-a-time path from Kafka.
package features
