package verify

import (
	"strings"
	"testing"
)

func TestTargetsDown(t *testing.T) {
	up := `{"status":"success","data":{"activeTargets":[
	  {"scrapePool":"backend","scrapeUrl":"http://10.244.1.3:8000/metrics","health":"up","lastError":""},
	  {"scrapePool":"backend","scrapeUrl":"http://10.244.2.3:8000/metrics","health":"up","lastError":""},
	  {"scrapePool":"postgresql","scrapeUrl":"http://10.244.3.4:9187/metrics","health":"up","lastError":""}]}}`
	jobs, down, err := targetsDown([]byte(up))
	if err != nil || len(down) > 0 || jobs != "backend 2, postgresql 1" {
		t.Errorf("all up: %q %v %v", jobs, down, err)
	}
	mixed := strings.Replace(up, `"health":"up","lastError":""},
	  {"scrapePool":"postgresql"`, `"health":"down","lastError":"Get \"http://10.244.2.3:8000/metrics\": context deadline exceeded"},
	  {"scrapePool":"postgresql"`, 1)
	_, down, err = targetsDown([]byte(mixed))
	if err != nil || len(down) != 1 || !strings.Contains(down[0], "job backend, http://10.244.2.3:8000/metrics: down: Get") {
		t.Errorf("one down: %v %v", down, err)
	}
	unknown := strings.Replace(up, `"health":"up"`, `"health":"unknown"`, 1)
	if _, down, _ := targetsDown([]byte(unknown)); len(down) != 1 || !strings.Contains(down[0], "not scraped yet") {
		t.Errorf("not scraped yet: %v", down)
	}
	for _, bad := range []string{`{"status":"success","data":{"activeTargets":[]}}`, `{"status":"error"}`, `<html>`} {
		if _, _, err := targetsDown([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
