package swanctl

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzParse: any input parses or fails with an error, never a panic or
// a hang; what parses converts into YAML that reads back.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.conf"))
	for _, path := range files {
		if data, err := os.ReadFile(path); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("a : b, c {\n k = \"v\\\"\\n\" # c\n}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		root, err := Parse("fuzz.conf", data)
		if err != nil {
			return
		}
		out, _ := Convert(root, "/etc/swanctl")
		var v any
		if err := yaml.Unmarshal(out, &v); err != nil {
			t.Fatalf("the conversion is not YAML: %v\n%s", err, out)
		}
	})
}
