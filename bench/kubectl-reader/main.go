// Reads a manifest stream on stdin and prints, one line per document, the JSON that
// kubectl's reader makes of it (apimachinery's YAMLReader cuts the stream at --- lines,
// sigs.k8s.io/yaml converts each document), or "ERROR: ..." for a document it refuses.
// Empty documents are skipped, as kubectl skips them.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func main() {
	r := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return
		}
		if err != nil {
			fmt.Println("READ ERROR:", err)
			return
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			fmt.Println("ERROR:", err)
			continue
		}
		if string(j) == "null" {
			continue
		}
		fmt.Println(string(j))
	}
}
