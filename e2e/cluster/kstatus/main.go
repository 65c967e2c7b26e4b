// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status) computes for
// Kubernetes objects, so that sluice's cluster tests check the Canary's conditions with the very
// rules Flux's `wait: true` and health checks apply, rather than with a reading of them.
//
// Input on stdin: JSON objects one after another (one per line, as the tests write them), where a
// `List` (or any object with `items`) or a JSON array stands for its items. Output: one line per
// object, `STATUS<TAB>MESSAGE`, the message on one line. Exits 1 when an object cannot be read
// or kstatus cannot compute its status, naming which.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	out := bufio.NewWriter(os.Stdout)
	err := run(os.Stdin, out)
	if flushErr := out.Flush(); err == nil {
		err = flushErr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	decoder := json.NewDecoder(in)
	// Numbers stay as written: kstatus reads generation and observedGeneration as int64, which
	// float64 would not give it.
	decoder.UseNumber()
	for index := 0; ; index++ {
		var value any
		if err := decoder.Decode(&value); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("value %d of stdin: %w", index, err)
		}
		objects, err := flatten(value)
		if err != nil {
			return fmt.Errorf("value %d of stdin: %w", index, err)
		}
		for _, object := range objects {
			result, err := compute(object)
			if err != nil {
				return fmt.Errorf("%s: %w", identity(object), err)
			}
			if _, err := fmt.Fprintf(out, "%s\t%s\n", result.Status, oneLine(result.Message)); err != nil {
				return err
			}
		}
	}
}

// flatten turns a value of stdin into the objects it holds.
func flatten(value any) ([]map[string]any, error) {
	switch v := value.(type) {
	case []any:
		var objects []map[string]any
		for _, item := range v {
			more, err := flatten(item)
			if err != nil {
				return nil, err
			}
			objects = append(objects, more...)
		}
		return objects, nil
	case map[string]any:
		if items, ok := v["items"].([]any); ok {
			return flatten(items)
		}
		return []map[string]any{v}, nil
	default:
		return nil, fmt.Errorf("not an object, a list or an array: %v", value)
	}
}

func compute(object map[string]any) (*status.Result, error) {
	converted, err := fromJSONNumbers(object)
	if err != nil {
		return nil, err
	}
	return status.Compute(&unstructured.Unstructured{Object: converted.(map[string]any)})
}

// fromJSONNumbers gives integers as int64 and other numbers as float64, the types unstructured
// objects hold (its deep copy panics on json.Number).
func fromJSONNumbers(value any) (any, error) {
	switch v := value.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		return v.Float64()
	case map[string]any:
		for key, item := range v {
			converted, err := fromJSONNumbers(item)
			if err != nil {
				return nil, err
			}
			v[key] = converted
		}
		return v, nil
	case []any:
		for i, item := range v {
			converted, err := fromJSONNumbers(item)
			if err != nil {
				return nil, err
			}
			v[i] = converted
		}
		return v, nil
	default:
		return value, nil
	}
}

func identity(object map[string]any) string {
	u := unstructured.Unstructured{Object: object}
	return fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
}

// oneLine keeps one output line per object whatever the message holds.
func oneLine(message string) string {
	return strings.Join(strings.Fields(message), " ")
}
