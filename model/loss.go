package model

import (
	"fmt"

	"github.com/herdml/herd/internal/torch"
)

// IgnoreIndex marks label positions that are not trained on (prompt and
// padding), as in PyTorch and Hugging Face.
const IgnoreIndex = -100

// CausalLMLoss returns the summed next-token cross-entropy of logits
// [B, S, V] against labels [B, S] (int64, IgnoreIndex where not scored):
// position t predicts labels[t+1], as Hugging Face shifts them. It returns
// a sum, not a mean, so that gradient accumulation and data parallelism
// can divide by the token count of the whole global batch.
func CausalLMLoss(s *torch.Scope, logits, labels *torch.Tensor) *torch.Tensor {
	if s.Err() != nil {
		return nil
	}
	sh := logits.Shape()
	if len(sh) != 3 {
		s.Fail(fmt.Errorf("model: logits must be [batch, seq, vocab], got %v", sh))
		return nil
	}
	B, S, V := sh[0], sh[1], sh[2]
	if S < 2 {
		return s.Zeros(nil, torch.Float32, logits.Device())
	}
	pred := s.Reshape(s.Narrow(logits, 1, 0, S-1), B*(S-1), V)
	target := s.Reshape(s.Narrow(labels, 1, 1, S-1), B*(S-1))
	return s.CrossEntropy(pred, target, torch.ReduceSum, IgnoreIndex)
}

// TokenLosses returns per-position next-token losses [B, S-1] (zero where
// the label is IgnoreIndex), for per-example scoring.
func TokenLosses(s *torch.Scope, logits, labels *torch.Tensor) *torch.Tensor {
	if s.Err() != nil {
		return nil
	}
	sh := logits.Shape()
	B, S, V := sh[0], sh[1], sh[2]
	pred := s.Reshape(s.Narrow(logits, 1, 0, S-1), B*(S-1), V)
	target := s.Reshape(s.Narrow(labels, 1, 1, S-1), B*(S-1))
	return s.View(s.CrossEntropy(pred, target, torch.ReduceNone, IgnoreIndex), B, S-1)
}
