package main

import (
	"github.com/urfave/cli/v2"

	"github.com/herdml/herd/dataset/tokenizer"
)

func tokenizeCommand() *cli.Command {
	return &cli.Command{
		Name:  "tokenize",
		Usage: "encode JSONL {\"text\": ...} on stdin to JSONL {\"ids\": [...]} on stdout",
		Description: "Encodes exactly as Hugging Face tokenizers does. PATH is a tokenizer.json or a " +
			"directory holding tokenizer.json (and tokenizer_config.json). One output line per input " +
			"line, in order; special tokens (BOS/EOS templates) are added unless --no-special.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "tokenizer", Required: true, Usage: "tokenizer.json or a model directory"},
			&cli.BoolFlag{Name: "no-special", Usage: "do not add special tokens"},
		},
		Action: func(c *cli.Context) error {
			tok, err := tokenizer.Load(c.String("tokenizer"))
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if err := tokenizer.TokenizeJSONL(c.App.Reader, c.App.Writer, tok, !c.Bool("no-special")); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			return nil
		},
	}
}
