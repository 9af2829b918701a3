package model

import (
	"errors"

	"github.com/herdml/herd/internal/torch"
)

// TrainCheckpointed runs the training forward and backward of b with
// activation checkpointing and returns the summed loss: the decoder layers
// first run without autograd, keeping only each layer's input; the head
// and loss run with autograd to give the gradient of the last hidden
// state; then each layer, last to first, is run again with autograd from
// its saved input and back-propagated with the gradient of its output.
// Activations of one layer at a time are alive instead of all of them, for
// about one more forward pass of compute. reseed(layer) is called before
// both runs of a layer, so dropout draws the same masks in both.
func (m *Model) TrainCheckpointed(s *torch.Scope, b Batch, labels *torch.Tensor, opt Options, reseed func(layer int)) *torch.Tensor {
	if s.Err() != nil {
		return nil
	}
	if opt.Cache != nil || b.Valid != nil {
		s.Fail(errors.New("model: checkpointed training takes a plain right-padded batch"))
		return nil
	}
	shape := b.IDs.Shape()
	B, T := shape[0], shape[1]
	in := m.trainInputs(s, T)

	// 1. Forward without autograd, keeping layer inputs.
	inputs := make([]*torch.Tensor, len(m.Layers))
	restore := torch.NoGrad()
	h := s.Embedding(m.Embed, b.IDs)
	for i := range m.Layers {
		inputs[i] = h
		reseed(i)
		h = m.layer(s, i, h, B, T, in, opt)
	}
	restore()

	// 2. Head and loss with autograd from a leaf standing for the last
	// hidden state.
	last := s.Detach(h)
	if s.Err() != nil {
		return nil
	}
	if err := last.SetRequiresGrad(true); err != nil {
		s.Fail(err)
		return nil
	}
	logits := s.To(s.Linear(rmsNorm(s, last, m.Norm, m.Config.RMSNormEps), m.LMHead, nil), torch.Float32)
	loss := CausalLMLoss(s, logits, labels)
	if s.Err() != nil {
		return nil
	}
	if err := loss.Backward(); err != nil {
		s.Fail(err)
		return nil
	}
	grad := s.Own(mustGrad(s, last))

	// 3. Replay each layer with autograd, last to first.
	for i := len(m.Layers) - 1; i >= 0 && s.Err() == nil; i-- {
		x := s.Detach(inputs[i])
		if s.Err() != nil {
			break
		}
		// Layer 0's input is the frozen embedding: no gradient needed.
		if i > 0 {
			if err := x.SetRequiresGrad(true); err != nil {
				s.Fail(err)
				break
			}
		}
		reseed(i)
		out := m.layer(s, i, x, B, T, in, opt)
		if s.Err() != nil {
			break
		}
		if err := out.BackwardWith(grad); err != nil {
			s.Fail(err)
			break
		}
		if i > 0 {
			grad = s.Own(mustGrad(s, x))
		}
	}
	return loss
}

func mustGrad(s *torch.Scope, t *torch.Tensor) *torch.Tensor {
	g, err := t.Grad()
	s.Fail(err)
	return g
}
