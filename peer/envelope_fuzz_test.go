package peer

import (
	"testing"
)

// FuzzOpenEnvelope: whatever bytes come off the network, and whatever a
// key holder seals, opening never panics and never yields an envelope
// that contradicts its additional data.
func FuzzOpenEnvelope(f *testing.F) {
	box := NewBox(DeriveKey([]byte(testSecret), PurposePeerRPC, "prod"))
	good, err := (&envelope{Version: protocolVersion, Kind: kindRequest, Method: "promise", ID: newRequestID(),
		From: "id-a", FromName: "node-a", TimeMs: 1, Body: []byte(`{"seed":"a"}`)}).seal(box)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, []byte(`{"v":1,"kind":"request","method":"promise","id":"00","body":{}}`))
	f.Add([]byte{boxFormat}, []byte(`{"kind":"response"}`))
	f.Add([]byte{}, []byte(`null`))
	f.Add(good[:len(good)/2], []byte(`{"v":1,"kind":"request","method":"commit"}`))
	f.Fuzz(func(t *testing.T, wire, plaintext []byte) {
		if e, err := openEnvelope(box, wire, kindRequest, "promise", ""); err == nil && (e.Kind != kindRequest || e.Method != "promise") {
			t.Errorf("opened an envelope that contradicts its additional data: %+v", e)
		}
		sealed := box.Seal(plaintext, envelopeAAD(kindRequest, "promise", ""))
		e, err := openEnvelope(box, sealed, kindRequest, "promise", "")
		if err == nil && (e.Kind != kindRequest || e.Method != "promise") {
			t.Errorf("opened an envelope that contradicts its additional data: %+v", e)
		}
	})
}
