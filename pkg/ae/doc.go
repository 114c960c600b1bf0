// Package ae is a denoising autoencoder for mixed-type tabular records,
// built for anomaly scoring. It is pure computation: no I/O, no metrics.
//
// # Model
//
// A record arrives in dense form (Data): numeric columns (scaled by the
// feature encoder), one level index per categorical field (level 0 means
// missing) and a missing flag per field. The network is
//
//	x → ReLU(W0·x + b0) → W1·h + b1 (bottleneck, the embedding)
//	  → ReLU(W2·z + b2) → W3·h + b3 = y
//
// where x holds the numeric values (clipped to ±InputClip) plus 0/1 sparse
// inputs (a missing indicator per numeric field, one-hot levels per
// categorical field; the first layer adds their weight rows instead of
// multiplying), and y holds one output per numeric column and one logit per
// categorical level.
//
// # Loss and score
//
// Field f's reconstruction error is
//
//	numeric:      e_f = mean over its columns of (y − t)²   (0 when t is missing)
//	categorical:  e_f = −log softmax(y_f)[t]                (cross-entropy)
//
// Training minimises the mean over rows of Σ_f e_f, with targets clipped
// to ±InputClip so that extreme rows in the unlabelled data cannot dominate
// the gradient. A record's anomaly score is Σ_f √(e_f / Norm_f) (or
// Σ_f e_f / Norm_f with Linear), where Norm_f is field f's mean error on
// held-out validation rows (top 1% left out; at least half the fields' mean,
// so a field reconstructed far better than the rest cannot make its small
// deviations the largest terms): every field contributes about 1 for a
// typical record whatever its scale, and each term is field f's
// contribution, the "reason". A target beyond ±SoftFrom (SoftFromClips
// input clips; InputClip for models fitted before SoftFrom) counts as
// ±(SoftFrom + ln(1 + excess)) (SoftTargets; models fitted before it use
// the target as it is): still stranger the further out, but a field whose
// ordinary rows sometimes read thousands of scale units (a sensor's spikes)
// no longer puts those rows above every anomaly. A missing numeric
// field has no error; it contributes √MissSurprisal_f, the surprise of
// seeing it missing (−ln of its smoothed missing rate in training), so that
// blanking fields cannot make a record look normal.
//
// # Training
//
// Denoising corrupts inputs, never targets: swap noise replaces a field by
// the same field of a random training row, masking marks it missing, and
// gaussian noise perturbs numeric values. Optimisation is mini-batch AdamW.
// A validation split drives early stopping (the best epoch's weights are
// kept), and optionally, after warm-up epochs, the rows with the highest
// error are left out of each epoch (TrimFraction), a defence against the
// fraud inside unlabelled data.
//
// Each mini-batch is split into two fixed shards whose gradients are
// computed on two goroutines and summed in a fixed order, so that training
// uses both cores of a small machine and is deterministic for a seed
// whatever GOMAXPROCS is.
//
// # Concurrency
//
// A trained Model is read-only and may be shared. Scorer holds scratch
// space; use one Scorer per goroutine. Score, Embed and Impute allocate
// nothing.
//
// # Kernels
//
// Every matrix product runs through one float32 kernel, act(x·W + b) with
// the bias and ReLU fused, over a right operand packed into 16-column
// panels: the forward pass on weights packed once per weight change, and
// training's backward pass on each layer's output gradient packed once per
// step (dW = inᵀ·g, the bias gradient 1ᵀ·g) and on Wᵀ packed at refresh
// (g·Wᵀ). The kernels are register-tiled Go assembly generated with avo
// (internal/asmgen, run by go generate): AVX-512F where the CPU has it,
// else AVX2+FMA, chosen at run time with golang.org/x/sys/cpu; elsewhere,
// or under the purego build tag, a portable Go kernel. Smaller generated
// passes do the AdamW step (summing the two shards' gradients), the
// gradient through ReLU, the input clip, squared errors, and the
// categorical fields' log-sum-exp when scoring (a polynomial exp; the
// logarithms follow in float32). The arithmetic around them works on whole
// batches.
package ae
