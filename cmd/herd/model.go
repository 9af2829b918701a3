package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/lora"
	"github.com/herdml/herd/model/hub"
	"github.com/herdml/herd/model/tiny"
)

func modelCommand() *cli.Command {
	return &cli.Command{
		Name:  "model",
		Usage: "download, create and merge models",
		Subcommands: []*cli.Command{
			{
				Name:      "pull",
				Usage:     "download a model from the Hugging Face hub into the standard hub cache",
				ArgsUsage: "ORG/NAME",
				Description: "Honours HF_HOME, HF_HUB_CACHE, HF_TOKEN and HF_ENDPOINT. Interrupted downloads resume; " +
					"files are checked against the hub's size and sha256. Prints the snapshot directory.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "revision", Value: "main", Usage: "branch, tag or commit"},
					&cli.StringSliceFlag{Name: "include", Usage: "file patterns to fetch (default: configs, safetensors, tokenizer files)"},
				},
				Action: func(c *cli.Context) error {
					repo, err := oneArg(c, "ORG/NAME")
					if err != nil {
						return err
					}
					last := map[string]time.Time{}
					dir, err := hub.Pull(c.Context, hub.Options{
						Repo: repo, Revision: c.String("revision"), Allow: c.StringSlice("include"),
						Progress: func(p hub.Progress) {
							done := p.Total >= 0 && p.Done >= p.Total
							if !done && time.Since(last[p.File]) < 2*time.Second {
								return
							}
							last[p.File] = time.Now()
							switch {
							case p.Cached:
								fmt.Fprintf(c.App.ErrWriter, "%s: cached\n", p.File)
							case p.Total > 0:
								fmt.Fprintf(c.App.ErrWriter, "%s: %.1f/%.1f MiB (%.0f%%)\n", p.File, mib(p.Done), mib(p.Total), 100*float64(p.Done)/float64(p.Total))
							default:
								fmt.Fprintf(c.App.ErrWriter, "%s: %.1f MiB\n", p.File, mib(p.Done))
							}
						},
					})
					if err != nil {
						return cli.Exit(err.Error(), 1)
					}
					fmt.Fprintln(c.App.Writer, dir)
					return nil
				},
			},
			{
				Name:  "init-tiny",
				Usage: "write a tiny random model with a real tokenizer, for tests and the demo",
				Description: "Writes config.json, model.safetensors (seeded random weights), tokenizer.json and " +
					"tokenizer_config.json (a byte-level BPE trained on herd's sample text) in Hugging Face layout.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Required: true, Usage: "model directory to write"},
					&cli.StringFlag{Name: "arch", Value: "llama", Usage: "llama, mistral or qwen2"},
					&cli.IntFlag{Name: "layers", Value: tiny.Default().Layers},
					&cli.IntFlag{Name: "hidden", Value: tiny.Default().Hidden},
					&cli.IntFlag{Name: "heads", Value: tiny.Default().Heads},
					&cli.IntFlag{Name: "kv-heads", Value: tiny.Default().KVHeads},
					&cli.IntFlag{Name: "intermediate", Value: tiny.Default().Intermediate},
					&cli.IntFlag{Name: "vocab", Value: tiny.Default().Vocab, Usage: "tokenizer and model vocabulary size"},
					&cli.BoolFlag{Name: "tie", Value: true, Usage: "tie the output head to the embeddings"},
					&cli.Uint64Flag{Name: "seed", Value: 1},
					&cli.StringFlag{Name: "sample-data", Usage: "also write train.jsonl and eval.jsonl from the sample text to this directory"},
				},
				Action: func(c *cli.Context) error {
					o := tiny.Default()
					o.Arch, o.Layers, o.Hidden, o.Heads, o.KVHeads = c.String("arch"), c.Int("layers"), c.Int("hidden"), c.Int("heads"), c.Int("kv-heads")
					o.Intermediate, o.Vocab, o.Tie, o.Seed = c.Int("intermediate"), c.Int("vocab"), c.Bool("tie"), c.Uint64("seed")
					if err := tiny.WriteWithTokenizer(c.String("out"), o); err != nil {
						return cli.Exit(err.Error(), 1)
					}
					fmt.Fprintf(c.App.Writer, "wrote %s model to %s (%d layers, hidden %d, vocab %d)\n", o.Arch, c.String("out"), o.Layers, o.Hidden, o.Vocab)
					if dir := c.String("sample-data"); dir != "" {
						train, eval, err := tiny.WriteSampleData(dir, 5)
						if err != nil {
							return cli.Exit(err.Error(), 1)
						}
						fmt.Fprintf(c.App.Writer, "wrote %d train and %d eval rows to %s\n", train, eval, dir)
					}
					return nil
				},
			},
			{
				Name:  "merge",
				Usage: "fold a LoRA adapter into a copy of its base model (like peft's merge_and_unload)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "base", Required: true, Usage: "base model directory or hub id"},
					&cli.StringFlag{Name: "adapter", Required: true, Usage: "PEFT adapter directory"},
					&cli.StringFlag{Name: "out", Required: true, Usage: "output directory"},
				},
				Action: func(c *cli.Context) error {
					base, err := hub.Resolve(c.String("base"), "")
					if err != nil {
						return cli.Exit(err.Error(), 1)
					}
					if err := lora.Merge(base, c.String("adapter"), c.String("out")); err != nil {
						return cli.Exit(err.Error(), 1)
					}
					fmt.Fprintf(c.App.Writer, "merged %s into %s: %s\n", c.String("adapter"), base, c.String("out"))
					return nil
				},
			},
		},
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
