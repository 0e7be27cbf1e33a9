// Package keyauth checks aiart's API keys inside the gateway (a Traefik
// local plugin), so that a model closed with `auth: apikey` costs no second
// HTTP hop per request. It decides as the auth service's /verify does for
// that mode (operator/aiart/auth/access.py decide_with_key, service.py):
// health paths open, the operator's probe token for this version, then the
// caller's key against the key records.
//
// The records come from the auth service's key feed (/keys): ids, names,
// roles, models and SHA-256 digests, never a secret. One reader per feed
// follows it with long polls, so a revoked key is refused as soon as the
// auth service reads its removal; a key the feed does not hold yet (just
// made) makes the plugin ask the feed again at once, at most every 250 ms
// (a request in between waits for that read).
// If the feed cannot be read, the last keys read stay in force.
package keyauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
)

const (
	subjectHeader = "X-Aiart-Subject"
	probeHeader   = "X-Aiart-Probe"
	// The feed answers a long poll within this; the client waits 2 s
	// more. Short, because a connection to an auth task that went away
	// (its service updated) may hang rather than close: the next one, to
	// a live task, is at most this much later.
	feedWaitSeconds = 2
	catchUpEvery    = 250 * time.Millisecond
)

var (
	keyPattern = regexp.MustCompile(`^aiart_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$`)
	// As access.py OPEN_PATHS: liveness and readiness, for health checkers.
	openPaths = regexp.MustCompile(
		`^(/models/[a-z0-9-]+(/versions/[a-z0-9-]+)?)?` +
			`/v2(/health/(live|ready)|/models/[a-z0-9-]+(/versions/[a-z0-9-]+)?/ready)$`)
)

// Config is one route's: the model it guards, where the key feed is, the
// CA of the feed's certificate, and the SHA-256 (hex) of this version's
// probe token (empty: no probe).
type Config struct {
	Model       string `json:"model,omitempty"`
	Feed        string `json:"feed,omitempty"`
	CA          string `json:"ca,omitempty"`
	ProbeDigest string `json:"probeDigest,omitempty"`
}

// CreateConfig is Traefik's hook for a route's empty configuration.
func CreateConfig() *Config {
	return &Config{}
}

type record struct {
	ID     string   `json:"id"`
	Name   string   `json:"name"`
	Role   string   `json:"role"`
	Models []string `json:"models"`
	SHA256 string   `json:"sha256"`
}

type key struct {
	name   string
	models []string
	digest []byte
}

type feed struct {
	url    string
	client *http.Client

	mu     sync.RWMutex
	keys   map[string]key
	tag    string
	loaded bool

	catchUpMu sync.Mutex
	caughtUp  time.Time
}

var (
	feedsMu sync.Mutex
	feeds   = map[string]*feed{}
)

// feedFor returns the one reader of a feed, started on first use: every
// route shares it, and Traefik's configuration reloads make new routes,
// not new readers.
func feedFor(address, caFile string) (*feed, error) {
	feedsMu.Lock()
	defer feedsMu.Unlock()
	if f, ok := feeds[address]; ok {
		return f, nil
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("the key feed's CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the key feed's CA %s holds no certificate", caFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	f := &feed{
		url:    address,
		client: &http.Client{Transport: transport, Timeout: (feedWaitSeconds + 2) * time.Second},
		keys:   map[string]key{},
	}
	feeds[address] = f
	go f.follow()
	return f, nil
}

func (f *feed) follow() {
	for {
		if err := f.fetch(feedWaitSeconds, ""); err != nil {
			log.Printf("aiart keyauth: cannot read the key feed %s: %v", f.url, err)
			time.Sleep(time.Second)
		}
	}
}

// fetch asks the feed once: wait (seconds) for a change of what this
// reader holds; id, a key to read the swarm for first.
func (f *feed) fetch(wait int, id string) error {
	f.mu.RLock()
	known := f.tag
	f.mu.RUnlock()
	query := url.Values{}
	query.Set("known", known)
	query.Set("wait", fmt.Sprint(wait))
	if id != "" {
		query.Set("id", id)
	}
	answer, err := f.client.Get(f.url + "?" + query.Encode())
	if err != nil {
		return err
	}
	defer answer.Body.Close()
	body, err := io.ReadAll(io.LimitReader(answer.Body, 64<<20))
	if err != nil {
		return err
	}
	if answer.StatusCode == http.StatusNotModified {
		return nil
	}
	if answer.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", answer.StatusCode, strings.TrimSpace(string(body)))
	}
	var parsed struct {
		Keys []record `json:"keys"`
	}
	if err := json.Unmarshal(body, &parsed); err != nil {
		return err
	}
	keys := make(map[string]key, len(parsed.Keys))
	for _, r := range parsed.Keys {
		digest, err := hex.DecodeString(r.SHA256)
		if err != nil {
			continue
		}
		keys[r.ID] = key{name: r.Name, models: r.Models, digest: digest}
	}
	// One field at a time: Traefik's interpreter (yaegi) got a tuple
	// assignment to these fields wrong (the tag set, the keys not).
	f.mu.Lock()
	f.keys = keys
	f.tag = answer.Header.Get("ETag")
	f.loaded = true
	f.mu.Unlock()
	return nil
}

// lookup: the key with this id, whether there is one, and whether the
// feed was ever read.
func (f *feed) lookup(id string) (key, bool, bool) {
	f.mu.RLock()
	k, ok := f.keys[id]
	loaded := f.loaded
	f.mu.RUnlock()
	return k, ok, loaded
}

// catchUp reads the feed now for a key it does not hold, at most every
// catchUpEvery: unknown keys cannot make the feed be read in a loop. A
// request that comes sooner waits for the next read instead of being
// refused on keys older than itself (a key made a moment ago must work),
// and requests that queued while a read ran are answered by it if it
// started after they came: one read for all of them.
func (f *feed) catchUp(id string, asked time.Time) {
	f.catchUpMu.Lock()
	defer f.catchUpMu.Unlock()
	if f.caughtUp.After(asked) {
		return
	}
	f.mu.RLock()
	_, found := f.keys[id]
	f.mu.RUnlock()
	if found {
		return
	}
	wait := catchUpEvery - time.Since(f.caughtUp)
	if wait > 0 {
		time.Sleep(wait)
	}
	f.caughtUp = time.Now()
	if err := f.fetch(0, id); err != nil {
		log.Printf("aiart keyauth: cannot read the key feed %s: %v", f.url, err)
	}
}

// KeyAuth guards one route.
type KeyAuth struct {
	next        http.Handler
	model       string
	probeDigest []byte
	feed        *feed
}

// New is Traefik's hook for a route's middleware.
func New(_ context.Context, next http.Handler, config *Config, _ string) (http.Handler, error) {
	if config.Model == "" || config.Feed == "" {
		return nil, fmt.Errorf("aiart keyauth: model and feed are required")
	}
	f, err := feedFor(config.Feed, config.CA)
	if err != nil {
		return nil, err
	}
	var probe []byte
	if config.ProbeDigest != "" {
		if probe, err = hex.DecodeString(config.ProbeDigest); err != nil {
			return nil, fmt.Errorf("aiart keyauth: probeDigest: %w", err)
		}
	}
	return &KeyAuth{next: next, model: config.Model, probeDigest: probe, feed: f}, nil
}

func refuse(rw http.ResponseWriter, status int, reason string) {
	if status == http.StatusUnauthorized {
		rw.Header().Set("WWW-Authenticate", `ApiKey realm="aiart"`)
	}
	body, _ := json.Marshal(map[string]string{"error": reason})
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	_, _ = rw.Write(body)
}

func (a *KeyAuth) pass(rw http.ResponseWriter, req *http.Request, subject string) {
	req.Header.Set(subjectHeader, subject)
	a.next.ServeHTTP(rw, req)
}

func (a *KeyAuth) isProbe(header string) bool {
	if len(a.probeDigest) == 0 || header == "" {
		return false
	}
	for _, token := range strings.Split(header, ",") {
		digest := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if subtle.ConstantTimeCompare(digest[:], a.probeDigest) == 1 {
			return true
		}
	}
	return false
}

// credential is the caller's key: X-API-Key, or Authorization: Bearer
// with an aiart key (anything else after Bearer is a token, not a key).
func credential(req *http.Request) string {
	if k := strings.TrimSpace(req.Header.Get("X-Api-Key")); k != "" {
		return k
	}
	scheme, value, _ := strings.Cut(strings.TrimSpace(req.Header.Get("Authorization")), " ")
	value = strings.TrimSpace(value)
	if strings.EqualFold(scheme, "bearer") && strings.HasPrefix(value, "aiart_") {
		return value
	}
	return ""
}

func (a *KeyAuth) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	if (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		openPaths.MatchString(req.URL.Path) {
		a.pass(rw, req, "anonymous")
		return
	}
	if a.isProbe(req.Header.Get(probeHeader)) {
		a.pass(rw, req, "aiart-probe")
		return
	}
	text := credential(req)
	if text == "" {
		refuse(rw, http.StatusUnauthorized, fmt.Sprintf(
			"model '%s' needs an aiart API key (X-API-Key or Authorization: Bearer)", a.model))
		return
	}
	parts := keyPattern.FindStringSubmatch(text)
	if parts == nil {
		refuse(rw, http.StatusUnauthorized, "the API key is malformed")
		return
	}
	k, found, loaded := a.feed.lookup(parts[1])
	if !found {
		a.feed.catchUp(parts[1], time.Now())
		k, found, loaded = a.feed.lookup(parts[1])
	}
	if !loaded {
		refuse(rw, http.StatusServiceUnavailable, "the gateway has not read the API keys yet")
		return
	}
	digest := sha256.Sum256([]byte(parts[2]))
	if !found || subtle.ConstantTimeCompare(digest[:], k.digest) != 1 {
		refuse(rw, http.StatusUnauthorized, "the API key is unknown or revoked")
		return
	}
	for _, model := range k.models {
		if model == "*" || model == a.model {
			a.pass(rw, req, "apikey:"+k.name)
			return
		}
	}
	rw.Header().Set(subjectHeader, "apikey:"+k.name)
	refuse(rw, http.StatusForbidden, fmt.Sprintf(
		"the API key '%s' does not cover model '%s'", k.name, a.model))
}
