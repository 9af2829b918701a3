package tokenizer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// TokenizeJSONL is the body of `herd tokenize`: it reads JSONL objects
// {"text": ...} from r and writes one {"ids": [...]} line per input line to
// w, in the same order. A line that is not such an object is an error
// naming its line number (1-based); lines written before it stay written.
func TokenizeJSONL(r io.Reader, w io.Writer, t Encoder, addSpecial bool) error {
	br := bufio.NewReaderSize(r, 1<<20)
	bw := bufio.NewWriterSize(w, 1<<16)
	var out []byte
	// Lines already encoded are flushed even when a later one fails.
	fail := func(err error) error {
		bw.Flush()
		return err
	}
	for line := 1; ; line++ {
		data, err := br.ReadBytes('\n')
		if len(data) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return fail(fmt.Errorf("tokenize: line %d: %w", line, err))
		}
		var row struct {
			Text *string `json:"text"`
		}
		if jerr := json.Unmarshal(data, &row); jerr != nil {
			return fail(fmt.Errorf("tokenize: line %d: %w", line, jerr))
		}
		if row.Text == nil {
			return fail(fmt.Errorf("tokenize: line %d: want an object with a \"text\" string", line))
		}
		ids, eerr := t.Encode(*row.Text, addSpecial)
		if eerr != nil {
			return fail(fmt.Errorf("tokenize: line %d: %w", line, eerr))
		}
		out = append(out[:0], `{"ids":[`...)
		for i, id := range ids {
			if i > 0 {
				out = append(out, ',')
			}
			out = appendInt(out, id)
		}
		out = append(out, "]}\n"...)
		if _, werr := bw.Write(out); werr != nil {
			return fmt.Errorf("tokenize: line %d: %w", line, werr)
		}
		if err == io.EOF {
			break
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("tokenize: %w", err)
	}
	return nil
}

func appendInt(b []byte, v int) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}
