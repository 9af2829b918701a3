package tokenizer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// jsonlChunk is how many lines TokenizeJSONL reads before encoding them in
// parallel.
const jsonlChunk = 1024

// TokenizeJSONL is the body of `herd tokenize`: it reads JSONL objects
// {"text": ...} from r and writes one {"ids": [...]} line per input line to
// w, in the same order. A line that is not such an object is an error
// naming its line number (1-based); the lines before it are written first.
// Lines are encoded in parallel over GOMAXPROCS goroutines, so t must be
// safe for concurrent use (*Tokenizer is).
func TokenizeJSONL(r io.Reader, w io.Writer, t Encoder, addSpecial bool) error {
	br := bufio.NewReaderSize(r, 1<<20)
	bw := bufio.NewWriterSize(w, 1<<16)
	var out []byte
	line := 0
	for {
		first := line + 1
		texts, eof, perr := readChunk(br, &line)
		ids, errs := encodeParallel(t, texts, addSpecial)
		for i := range texts {
			if errs[i] != nil {
				bw.Flush()
				return fmt.Errorf("tokenize: line %d: %w", first+i, errs[i])
			}
			out = append(out[:0], `{"ids":[`...)
			for k, id := range ids[i] {
				if k > 0 {
					out = append(out, ',')
				}
				out = appendInt(out, id)
			}
			out = append(out, "]}\n"...)
			if _, err := bw.Write(out); err != nil {
				return fmt.Errorf("tokenize: line %d: %w", first+i, err)
			}
		}
		if perr != nil {
			bw.Flush()
			return perr
		}
		if eof {
			break
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("tokenize: %w", err)
	}
	return nil
}

// readChunk reads up to jsonlChunk lines, advancing *line. It stops early at
// the end of input (eof) or at a bad line (perr, naming the line).
func readChunk(br *bufio.Reader, line *int) (texts []string, eof bool, perr error) {
	for len(texts) < jsonlChunk {
		data, err := br.ReadBytes('\n')
		if len(data) == 0 && err == io.EOF {
			return texts, true, nil
		}
		*line++
		if err != nil && err != io.EOF {
			return texts, false, fmt.Errorf("tokenize: line %d: %w", *line, err)
		}
		var row struct {
			Text *string `json:"text"`
		}
		if jerr := json.Unmarshal(data, &row); jerr != nil {
			return texts, false, fmt.Errorf("tokenize: line %d: %w", *line, jerr)
		}
		if row.Text == nil {
			return texts, false, fmt.Errorf("tokenize: line %d: want an object with a \"text\" string", *line)
		}
		texts = append(texts, *row.Text)
		if err == io.EOF {
			return texts, true, nil
		}
	}
	return texts, false, nil
}

// encodeParallel encodes texts over GOMAXPROCS goroutines, keeping order.
func encodeParallel(t Encoder, texts []string, addSpecial bool) ([][]int, []error) {
	ids := make([][]int, len(texts))
	errs := make([]error, len(texts))
	workers := min(runtime.GOMAXPROCS(0), len(texts))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Interleaved assignment keeps neighbouring (similar-length)
			// lines on different workers.
			for i := w; i < len(texts); i += workers {
				ids[i], errs[i] = t.Encode(texts[i], addSpecial)
			}
		}()
	}
	wg.Wait()
	return ids, errs
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
