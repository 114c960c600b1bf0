package offline

import (
	"errors"
	"flag"
	"strings"

	"github.com/fraudstream/fraudstream/pkg/ae"
)

// AEFlags registers the training flags on fs, filling c. Each flag's
// default is the package default (shown as 0 where ae.Config picks it).
func AEFlags(fs *flag.FlagSet, c *ae.Config) {
	fs.Uint64Var(&c.Seed, "seed", 0, "random seed; the same seed and data give the same model")
	fs.IntVar(&c.Hidden, "hidden", 64, "width of the hidden layers")
	fs.IntVar(&c.Bottleneck, "bottleneck", 16, "width of the bottleneck (embedding)")
	fs.IntVar(&c.Epochs, "epochs", 30, "maximum epochs (early stopping usually ends sooner)")
	fs.IntVar(&c.BatchSize, "batch", 256, "mini-batch size")
	fs.IntVar(&c.Patience, "patience", 4, "epochs without validation improvement before stopping")
	fs.Float64Var(&c.LearningRate, "lr", 1e-3, "Adam learning rate")
	fs.Float64Var(&c.WeightDecay, "weight-decay", 1e-5, "decoupled weight decay (negative: off)")
	fs.Float64Var(&c.SwapNoise, "swap-noise", 0.25, "probability a field is swapped with another row's (negative: off)")
	fs.Float64Var(&c.GaussianNoise, "gauss-noise", 0.1, "std of gaussian noise on scaled numeric inputs (negative: off)")
	fs.Float64Var(&c.MaskNoise, "mask-noise", 0.05, "probability a field is masked as missing (negative: off)")
	fs.Float64Var(&c.ValidationFraction, "val-frac", 0.1, "share of rows held back for validation")
	fs.Float64Var(&c.TrimFraction, "trim", 0.08, "share of highest-error training rows left out after warm-up (contamination defence; negative: off)")
	fs.IntVar(&c.WarmupEpochs, "warmup", 1, "epochs before trimming starts")
	fs.BoolVar(&c.Linear, "linear", false, "score with linear field contributions e/norm instead of sqrt(e/norm)")
	fs.BoolVar(&c.RawTargets, "raw-targets", false, "measure scores' numeric errors against values beyond the input clip as they are, not (past 50 scale units, five clips) 50 plus the log of the excess")
}

// KeyFiles is a flag of key file paths that may be repeated, each use a
// path or a comma-separated list of paths.
type KeyFiles []string

func (k *KeyFiles) String() string { return strings.Join(*k, ",") }

// Set adds the paths of one use of the flag.
func (k *KeyFiles) Set(v string) error {
	paths := SplitList(v)
	if len(paths) == 0 {
		return errors.New("no key file given")
	}
	*k = append(*k, paths...)
	return nil
}

// VerifyKeyFlag registers --verify-key on fs, filling keys.
func VerifyKeyFlag(fs *flag.FlagSet, keys *[]string) {
	fs.Var((*KeyFiles)(keys), "verify-key", "public key (PEM, as 'openssl pkey -pubout' writes it) that model bundles must be signed with; "+
		"repeat it or give a comma-separated list to trust several while keys rotate. A bundle that is unsigned or signed by another key is refused. "+
		"Empty: signatures are not checked")
}

// SigningKeyFlag registers --signing-key on fs, filling path.
func SigningKeyFlag(fs *flag.FlagSet, path *string, what string) {
	fs.StringVar(path, "signing-key", "", "ed25519 private key (PEM PKCS#8, as 'openssl genpkey -algorithm ed25519' writes it) that signs "+what+"; empty: unsigned")
}

// historyFiles is the repeatable --history flag.
type historyFiles []string

func (h *historyFiles) String() string { return strings.Join(*h, ",") }

func (h *historyFiles) Set(v string) error {
	paths := SplitList(v)
	if len(paths) == 0 {
		return errors.New("no history file given")
	}
	*h = append(*h, paths...)
	return nil
}

// HistoryFlag registers --history on fs, filling paths.
func HistoryFlag(fs *flag.FlagSet, paths *[]string, what string) {
	fs.Var((*historyFiles)(paths), "history", "earlier transactions (same columns) that warm the entities' states, replayed in event-time order with the input but "+what+
		"; repeat it or give a comma-separated list. Unused when the model has no entity score")
}

// DAEOnlyFlag registers --dae-only on fs.
func DAEOnlyFlag(fs *flag.FlagSet, p *bool) {
	fs.BoolVar(p, "dae-only", false, "score by the autoencoder alone when the model also has an entity score")
}
