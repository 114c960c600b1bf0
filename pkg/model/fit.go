package model

import (
	"errors"
	"fmt"
	"time"

	"github.com/fraudstream/fraudstream/pkg/ae"
	"github.com/fraudstream/fraudstream/pkg/features"
)

// FitOptions configures Fit. Zero values select the packages' defaults.
type FitOptions struct {
	Encoder features.EncoderOptions
	AE      ae.Config
	// Source describes the training data in the metadata (a file, a topic).
	Source string
	// BadRows is recorded in the metadata (rows the reader skipped).
	BadRows int
	// Now is the clock for TrainedAt; nil means time.Now.
	Now func() time.Time
}

// Fit fits the encoder and the autoencoder on rows (in schema order) and
// returns a complete bundle.
func Fit(s *features.Schema, rows [][]string, opt FitOptions) (*Bundle, error) {
	if len(rows) == 0 {
		return nil, errors.New("model: no rows to train on")
	}
	enc, err := features.FitEncoder(s, rows, opt.Encoder)
	if err != nil {
		return nil, err
	}
	fields := Layout(enc)
	d := EncodeRows(enc, rows)
	m, res, err := ae.Train(fields, d, opt.AE)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if opt.Now != nil {
		now = opt.Now
	}
	meta := Meta{
		TrainedAt:   now().UTC(),
		CodeVersion: CodeVersion(),
		Seed:        opt.AE.Seed,
		Rows:        len(rows),
		TrainRows:   res.TrainRows,
		ValRows:     res.ValRows,
		BadRows:     opt.BadRows,
		Epochs:      res.Epochs,
		BestEpoch:   res.BestEpoch,
		TrainLoss:   res.TrainLoss,
		ValLoss:     res.ValLoss,
		Duration:    res.Duration.Seconds(),
		Source:      opt.Source,
		Config:      configSummary(opt.AE),
	}
	if ti := s.Index(s.TimeField); ti >= 0 {
		meta.TimeFrom, meta.TimeTo = timeRange(rows, ti, s.Fields[ti].Layout)
	}
	return &Bundle{Encoder: enc, Model: m, Calibration: NewCalibration(res.ValScores), Meta: meta}, nil
}

// configSummary is the training configuration as recorded in metadata.
func configSummary(c ae.Config) map[string]any {
	return map[string]any{
		"hidden": c.Hidden, "bottleneck": c.Bottleneck, "epochs": c.Epochs, "batch_size": c.BatchSize,
		"learning_rate": c.LearningRate, "weight_decay": c.WeightDecay, "swap_noise": c.SwapNoise,
		"gaussian_noise": c.GaussianNoise, "mask_noise": c.MaskNoise, "trim_fraction": c.TrimFraction,
		"validation_fraction": c.ValidationFraction, "patience": c.Patience,
	}
}

func timeRange(rows [][]string, col int, layout string) (from, to time.Time) {
	for _, r := range rows {
		if col >= len(r) {
			continue
		}
		t, ok := features.ParseTime(r[col], layout)
		if !ok {
			continue
		}
		if from.IsZero() || t.Before(from) {
			from = t
		}
		if t.After(to) {
			to = t
		}
	}
	return from, to
}

// EncodeRows encodes rows (schema order) into the dense form.
func EncodeRows(enc *features.Encoder, rows [][]string) *ae.Data {
	nc, cf, nf := enc.Width()
	n := len(rows)
	d := &ae.Data{N: n, Num: make([]float32, n*nc), Cat: make([]int32, n*cf), Miss: make([]bool, n*nf)}
	for i, r := range rows {
		enc.Encode(r, d.Num[i*nc:(i+1)*nc], d.Cat[i*cf:(i+1)*cf], d.Miss[i*nf:(i+1)*nf])
	}
	return d
}

// Describe is a one-line summary of a bundle for logs and CLIs.
func (b *Bundle) Describe() string {
	d := b.Model.Dims()
	return fmt.Sprintf("%d fields, network %d-%d-%d-%d-%d, trained on %d rows (%d epochs, validation loss %.4f), p99.5 score %.3g",
		len(b.Encoder.Fields), d[0], d[1], d[2], d[3], d[4], b.Meta.Rows, b.Meta.Epochs, b.Meta.ValLoss, b.Calibration.Quantile(0.995))
}

// Loss is the model's mean reconstruction loss on rows (in this bundle's
// schema order); see ae.Model.Loss.
func (b *Bundle) Loss(rows [][]string) float64 {
	return b.Model.Loss(EncodeRows(b.Encoder, rows))
}
