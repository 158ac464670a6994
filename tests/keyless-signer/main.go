// keyless-signer makes REAL Sigstore keyless attestations for Portcullis'
// tests, signed by a throwaway "virtual Sigstore" (Fulcio CA, CT log, Rekor
// log and RFC 3161 timestamp authority) whose keys live in a state directory.
// It is a test-fixture generator and never a real signer: see README.md.
//
//	keyless-signer root --state DIR [--force]
//	keyless-signer sign --state DIR --statement FILE --identity SAN --issuer URL
//	    [--out FILE] [--format bundle|legacy] [--no-tlog]
//	    [--rekor-kind intoto|dsse|intoto-v0.0.1] [--github-claims k=v,...]
//
// It follows sigstore-go's pkg/testing/ca.VirtualSigstore (same certificate
// profiles, Rekor entries built with rekor's own types, SET, checkpoint and
// timestamp built the same way), but keeps its own keys: VirtualSigstore's keys
// are unexported (so they cannot be persisted between invocations), its CA and
// TSA certificates expire within minutes to hours, and its leaf certificates
// carry only an e-mail SAN and the legacy issuer extension, with no SCT.
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // subject key identifier, as RFC 5280 method 1
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	"github.com/digitorus/timestamp"
	ct "github.com/google/certificate-transparency-go"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	"github.com/google/certificate-transparency-go/x509util"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	rekortypes "github.com/sigstore/rekor/pkg/types"
	_ "github.com/sigstore/rekor/pkg/types/dsse/v0.0.1"   // registers dsse 0.0.1
	_ "github.com/sigstore/rekor/pkg/types/intoto/v0.0.1" // registers intoto 0.0.1
	_ "github.com/sigstore/rekor/pkg/types/intoto/v0.0.2" // registers intoto 0.0.2
	rekorutil "github.com/sigstore/rekor/pkg/util"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"
)

const (
	stateFile       = "signer-state.json"
	trustedRootFile = "trusted_root.json"
	inTotoType      = "application/vnd.in-toto+json"
	bundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// Everything in the virtual root is valid from an hour before `root` ran
	// for ten years, so a state directory never expires under a test suite.
	backdate = time.Hour
	lifetime = 10 * 365 * 24 * time.Hour
	// Where the virtual services claim to live (never contacted).
	fulcioURI = "https://fulcio.keyless-signer.test"
	tsaURI    = "https://tsa.keyless-signer.test"
	rekorURL  = "https://rekor.keyless-signer.test"
	ctlogURL  = "https://ctlog.keyless-signer.test"
	// The Rekor v1 checkpoint origin is "<hostname> - <tree ID>".
	rekorHost   = "rekor.keyless-signer.test"
	rekorTreeID = 1193050959916656506
	// Each entry sits at index proofIndex of a proofTreeSize-leaf tree whose
	// other leaves are random, so the inclusion proof has real audit hashes.
	// Like a sharded Rekor, the entry's global logIndex is logIndexOffset
	// further on than its index in the tree.
	proofTreeSize  = 7
	proofIndex     = 5
	logIndexOffset = 100000
)

// Fulcio's certificate extensions (sigstore/fulcio docs/oid-info.md and
// pkg/certificate/extensions.go). 1.1-1.6 hold the raw string; 1.8 and later a
// DER-encoded UTF8String.
var (
	oidIssuer   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
	// --github-claims names, as in oid-info.md.
	claimOIDs = map[string]int{
		"workflow-trigger": 2, "workflow-sha": 3, "workflow-name": 4,
		"workflow-repository": 5, "workflow-ref": 6, // deprecated raw-string ones
		"build-signer-uri": 9, "build-signer-digest": 10, "runner-environment": 11,
		"source-repo-uri": 12, "source-repo-digest": 13, "source-repo-ref": 14,
		"source-repo-id": 15, "source-repo-owner-uri": 16, "source-repo-owner-id": 17,
		"build-config-uri": 18, "build-config-digest": 19, "build-trigger": 20,
		"run-invocation-uri": 21, "source-repo-visibility": 22, "deployment-environment": 23,
	}
	oidCTPoison  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 3}
	oidSCTList   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
	oidEKU       = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidTSAPolicy = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 2}
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "root":
		err = cmdRoot(os.Args[2:])
	case "sign":
		err = cmdSign(os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
	default:
		err = fmt.Errorf("unknown command %q (want root or sign)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "keyless-signer: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: keyless-signer root --state DIR [--force]
       keyless-signer sign --state DIR --statement FILE --identity SAN --issuer URL
           [--out FILE] [--format bundle|legacy] [--no-tlog]
           [--rekor-kind intoto|dsse|intoto-v0.0.1] [--github-claims k=v,...]
Test fixtures only: signs with a throwaway virtual Sigstore (see README.md).
`)
	os.Exit(2)
}

// state is what `sign` needs beyond trusted_root.json: the private keys.
type state struct {
	FulcioIntermediateKey string `json:"fulcioIntermediateKey"`
	TSALeafKey            string `json:"tsaLeafKey"`
	RekorKey              string `json:"rekorKey"`
	CTLogKey              string `json:"ctlogKey"`
}

// ---------------------------------------------------------------- root

func cmdRoot(args []string) error {
	fs := flag.NewFlagSet("root", flag.ContinueOnError)
	dir := fs.String("state", "", "directory for trusted_root.json and the private keys (required)")
	force := fs.Bool("force", false, "replace an existing virtual Sigstore in --state")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		return errors.New("root: --state DIR is required and takes no arguments")
	}
	if _, err := os.Stat(filepath.Join(*dir, stateFile)); err == nil && !*force {
		return fmt.Errorf("root: %s already holds a virtual Sigstore (use --force to replace it)", *dir)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	start := time.Now().Add(-backdate).UTC().Truncate(time.Second)
	end := start.Add(lifetime)

	// Fulcio: a P-384 root and intermediate, as the public-good instance has.
	fulcioRootKey, fulcioRoot, err := newCA(elliptic.P384(), "sigstore", nil, nil, start, end, 1)
	if err != nil {
		return err
	}
	fulcioIntKey, fulcioInt, err := newCA(elliptic.P384(), "sigstore-intermediate", fulcioRoot, fulcioRootKey, start, end, 0, x509.ExtKeyUsageCodeSigning)
	if err != nil {
		return err
	}
	// TSA: root, intermediate and a leaf whose EKU is timeStamping, critical (RFC 3161 2.3).
	tsaRootKey, tsaRoot, err := newCA(elliptic.P256(), "sigstore-tsa-root", nil, nil, start, end, 1)
	if err != nil {
		return err
	}
	tsaIntKey, tsaInt, err := newCA(elliptic.P256(), "sigstore-tsa-intermediate", tsaRoot, tsaRootKey, start, end, 0, x509.ExtKeyUsageTimeStamping)
	if err != nil {
		return err
	}
	tsaLeafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ekuTS, _ := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	tsaLeaf, err := issue(&x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "sigstore-tsa", Organization: []string{"sigstore.dev"}},
		NotBefore:    start, NotAfter: end,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: oidEKU, Critical: true, Value: ekuTS}},
	}, tsaInt, &tsaLeafKey.PublicKey, tsaIntKey)
	if err != nil {
		return err
	}
	rekorKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ctlogKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}

	// The trusted root, marshalled by sigstore-go itself (protobuf-specs JSON).
	rekorLog, err := transparencyLog(rekorURL, rekorKey, start)
	if err != nil {
		return err
	}
	ctLog, err := transparencyLog(ctlogURL, ctlogKey, start)
	if err != nil {
		return err
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{&root.FulcioCertificateAuthority{
			Root: fulcioRoot, Intermediates: []*x509.Certificate{fulcioInt},
			ValidityPeriodStart: start, URI: fulcioURI,
		}},
		map[string]*root.TransparencyLog{hex.EncodeToString(ctLog.ID): ctLog},
		[]root.TimestampingAuthority{&root.SigstoreTimestampingAuthority{
			Root: tsaRoot, Intermediates: []*x509.Certificate{tsaInt}, Leaf: tsaLeaf,
			ValidityPeriodStart: start, URI: tsaURI,
		}},
		map[string]*root.TransparencyLog{hex.EncodeToString(rekorLog.ID): rekorLog})
	if err != nil {
		return err
	}
	trJSON, err := tr.MarshalJSON()
	if err != nil {
		return err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, trJSON, "", "  "); err != nil {
		return err
	}
	pretty.WriteByte('\n')

	var st state
	for _, k := range []struct {
		dst *string
		key *ecdsa.PrivateKey
	}{{&st.FulcioIntermediateKey, fulcioIntKey}, {&st.TSALeafKey, tsaLeafKey}, {&st.RekorKey, rekorKey}, {&st.CTLogKey, ctlogKey}} {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return err
		}
		*k.dst = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	stJSON, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(*dir, stateFile), append(stJSON, '\n'), 0o600); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(*dir, trustedRootFile), pretty.Bytes(), 0o644)
}

// newCA makes a CA certificate (self-signed when parent is nil).
func newCA(curve elliptic.Curve, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey,
	start, end time.Time, maxPathLen int, eku ...x509.ExtKeyUsage) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"sigstore.dev"}},
		NotBefore:             start,
		NotAfter:              end,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            maxPathLen,
		MaxPathLenZero:        maxPathLen == 0,
		ExtKeyUsage:           eku,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	cert, err := issue(tmpl, parent, &key.PublicKey, parentKey)
	return key, cert, err
}

func issue(tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// transparencyLog describes a Rekor or CT log; its ID is the SHA-256 of the
// DER public key, as the real logs' IDs are.
func transparencyLog(baseURL string, key *ecdsa.PrivateKey, start time.Time) (*root.TransparencyLog, error) {
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	id := sha256.Sum256(der)
	return &root.TransparencyLog{
		BaseURL: baseURL, ID: id[:], ValidityPeriodStart: start,
		HashFunc: crypto.SHA256, PublicKey: key.Public(), SignatureHashFunc: crypto.SHA256,
	}, nil
}

// ---------------------------------------------------------------- sign

// virtualSigstore is a loaded state directory.
type virtualSigstore struct {
	fulcio   *root.FulcioCertificateAuthority
	tsa      *root.SigstoreTimestampingAuthority
	rekorLog *root.TransparencyLog
	ctLog    *root.TransparencyLog

	// The private halves of the intermediate, TSA leaf, Rekor and CT log keys.
	fulcioKey, tsaKey, rekorKey, ctlogKey *ecdsa.PrivateKey
}

func cmdSign(args []string) error {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	dir := fs.String("state", "", "directory made by `keyless-signer root` (required)")
	stmtPath := fs.String("statement", "", "in-toto Statement JSON to sign, bytes used as-is (required)")
	identity := fs.String("identity", "", "certificate SAN: a URI if it has a scheme, else an e-mail address (required)")
	issuer := fs.String("issuer", "", "OIDC issuer URL for the Fulcio issuer extensions (required)")
	out := fs.String("out", "", "output file (default stdout)")
	format := fs.String("format", "bundle", "bundle (Sigstore bundle v0.3 JSON) or legacy (cosign v2 .att layer description)")
	noTlog := fs.Bool("no-tlog", false, "no Rekor entry; an RFC 3161 timestamp only")
	rekorKind := fs.String("rekor-kind", "intoto", "Rekor entry: intoto (intoto 0.0.2), dsse (dsse 0.0.1) or intoto-v0.0.1")
	claims := map[string]string{}
	fs.Func("github-claims", "Fulcio extensions, k=v[,k=v...], k a name from README.md or a dotted OID (repeatable)", func(s string) error {
		for _, kv := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("%q is not key=value", kv)
			}
			claims[strings.TrimSpace(k)] = v
		}
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *stmtPath == "" || *identity == "" || *issuer == "" || fs.NArg() > 0 {
		return errors.New("sign: --state, --statement, --identity and --issuer are required, and there are no positional arguments")
	}
	if *format != "bundle" && *format != "legacy" {
		return fmt.Errorf("sign: --format must be bundle or legacy, not %q", *format)
	}
	kind, version, err := rekorKindVersion(*rekorKind)
	if err != nil {
		return err
	}
	if *format == "bundle" && version == "0.0.1" && kind == "intoto" {
		return errors.New("sign: sigstore bundles cannot carry intoto 0.0.1 entries (sigstore-go rejects them); use it with --format legacy")
	}
	exts, err := claimExtensions(*issuer, claims)
	if err != nil {
		return err
	}
	statement, err := os.ReadFile(*stmtPath)
	if err != nil {
		return err
	}
	if !json.Valid(statement) {
		return fmt.Errorf("sign: %s is not JSON", *stmtPath)
	}
	vs, err := loadState(*dir)
	if err != nil {
		return err
	}

	now := time.Now()
	leaf, leafKey, err := vs.leafCertificate(*identity, exts, now)
	if err != nil {
		return err
	}
	// The DSSE envelope. Its bytes are what Rekor hashes and what a legacy
	// .att layer holds; keys are in sorted order, so re-serialising the parsed
	// object with sorted keys (serde_json's default) gives the same bytes.
	sig, err := ecdsa.SignASN1(rand.Reader, leafKey, sha256Sum(dsse.PAE(inTotoType, statement)))
	if err != nil {
		return err
	}
	env := envelope{Payload: base64.StdEncoding.EncodeToString(statement), PayloadType: inTotoType,
		Signatures: []envelopeSig{{KeyID: "", Sig: base64.StdEncoding.EncodeToString(sig)}}}
	envBytes, err := json.Marshal(env)
	if err != nil {
		return err
	}
	leafPEM := pemCert(leaf)

	var entry *tlogEntry
	if !*noTlog {
		if entry, err = vs.rekorEntry(kind, version, envBytes, leafPEM, now); err != nil {
			return err
		}
	}

	var output []byte
	if *format == "bundle" {
		// sigstore verifiers timestamp the DSSE signature itself.
		tsr, err := vs.timestamp(sig, now)
		if err != nil {
			return err
		}
		output, err = makeBundle(leaf, statement, sig, tsr, entry)
		if err != nil {
			return err
		}
	} else {
		// cosign's legacy layer: the TSA (if any) stamps the envelope bytes.
		var tsr []byte
		if *noTlog {
			if tsr, err = vs.timestamp(envBytes, now); err != nil {
				return err
			}
		}
		output, err = makeLegacy(statement, env, envBytes, leafPEM, pemCert(vs.fulcio.Intermediates[0])+pemCert(vs.fulcio.Root), entry, tsr)
		if err != nil {
			return err
		}
	}
	output = append(output, '\n')
	if *out == "" || *out == "-" {
		_, err = os.Stdout.Write(output)
		return err
	}
	return writeAtomic(*out, output, 0o644)
}

func rekorKindVersion(s string) (string, string, error) {
	switch s {
	case "intoto":
		return "intoto", "0.0.2", nil
	case "intoto-v0.0.1":
		return "intoto", "0.0.1", nil
	case "dsse":
		return "dsse", "0.0.1", nil
	}
	return "", "", fmt.Errorf("sign: --rekor-kind must be intoto, dsse or intoto-v0.0.1, not %q", s)
}

// claimExtensions builds the Fulcio issuer extensions and the --github-claims ones.
func claimExtensions(issuer string, claims map[string]string) ([]pkix.Extension, error) {
	issuerDER, err := asn1.MarshalWithParams(issuer, "utf8")
	if err != nil {
		return nil, err
	}
	exts := []pkix.Extension{{Id: oidIssuer, Value: []byte(issuer)}, {Id: oidIssuerV2, Value: issuerDER}}
	for k := range claims {
		var oid asn1.ObjectIdentifier
		if n, ok := claimOIDs[k]; ok {
			oid = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, n}
		} else {
			for _, part := range strings.Split(k, ".") {
				var n int
				if _, err := fmt.Sscanf(part, "%d", &n); err != nil || fmt.Sprint(n) != part {
					return nil, fmt.Errorf("sign: unknown --github-claims key %q (see README.md for names, or give a dotted OID)", k)
				}
				oid = append(oid, n)
			}
		}
		value := []byte(claims[k])
		// Fulcio's 1.1-1.7 extensions are raw strings; 1.8 on are DER UTF8Strings.
		if !(len(oid) == 9 && oid[:8].Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1}) && oid[8] < 8) {
			if value, err = asn1.MarshalWithParams(claims[k], "utf8"); err != nil {
				return nil, err
			}
		}
		exts = append(exts, pkix.Extension{Id: oid, Value: value})
	}
	sort.Slice(exts, func(i, j int) bool { return lessOID(exts[i].Id, exts[j].Id) })
	return exts, nil
}

func lessOID(a, b asn1.ObjectIdentifier) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

func loadState(dir string) (*virtualSigstore, error) {
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("sign: %w (run `keyless-signer root --state %s` first)", err, dir)
	}
	var st state
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("sign: %s: %w", stateFile, err)
	}
	tr, err := root.NewTrustedRootFromPath(filepath.Join(dir, trustedRootFile))
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	vs := &virtualSigstore{}
	var ok1, ok2 bool
	if cas := tr.FulcioCertificateAuthorities(); len(cas) == 1 {
		vs.fulcio, ok1 = cas[0].(*root.FulcioCertificateAuthority)
	}
	if tsas := tr.TimestampingAuthorities(); len(tsas) == 1 {
		vs.tsa, ok2 = tsas[0].(*root.SigstoreTimestampingAuthority)
	}
	for _, l := range tr.RekorLogs() {
		vs.rekorLog = l
	}
	for _, l := range tr.CTLogs() {
		vs.ctLog = l
	}
	if !ok1 || !ok2 || vs.rekorLog == nil || vs.ctLog == nil || len(vs.fulcio.Intermediates) != 1 || vs.tsa.Leaf == nil {
		return nil, fmt.Errorf("sign: %s was not written by `keyless-signer root`", trustedRootFile)
	}
	for _, k := range []struct {
		pemKey string
		dst    **ecdsa.PrivateKey
		pub    crypto.PublicKey
	}{{st.FulcioIntermediateKey, &vs.fulcioKey, vs.fulcio.Intermediates[0].PublicKey},
		{st.TSALeafKey, &vs.tsaKey, vs.tsa.Leaf.PublicKey},
		{st.RekorKey, &vs.rekorKey, vs.rekorLog.PublicKey},
		{st.CTLogKey, &vs.ctlogKey, vs.ctLog.PublicKey}} {
		block, _ := pem.Decode([]byte(k.pemKey))
		if block == nil {
			return nil, fmt.Errorf("sign: %s: missing key", stateFile)
		}
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("sign: %s: %w", stateFile, err)
		}
		ec, ok := key.(*ecdsa.PrivateKey)
		if !ok || !ec.PublicKey.Equal(k.pub) {
			return nil, fmt.Errorf("sign: %s does not match %s", stateFile, trustedRootFile)
		}
		*k.dst = ec
	}
	return vs, nil
}

// leafCertificate issues a Fulcio-style short-lived certificate for a fresh
// P-256 key, with an SCT from the virtual CT log embedded the way Fulcio does
// it: sign the precertificate (poison extension) TBS, then issue the final
// certificate from the same template with the SCT list instead of the poison.
func (vs *virtualSigstore) leafCertificate(identity string, exts []pkix.Extension, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, err
	}
	ski := sha1.Sum(pubDER) //nolint:gosec
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(10 * time.Minute),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		SubjectKeyId: ski[:],
	}
	// The subject is empty, so Go marks the SAN extension critical, as Fulcio does.
	if u, err := url.Parse(identity); err == nil && u.Scheme != "" {
		tmpl.URIs = []*url.URL{u}
	} else {
		tmpl.EmailAddresses = []string{identity}
	}
	intermediate := vs.fulcio.Intermediates[0]

	tmpl.ExtraExtensions = append(append([]pkix.Extension{}, exts...),
		pkix.Extension{Id: oidCTPoison, Critical: true, Value: asn1.NullBytes})
	precert, err := x509.CreateCertificate(rand.Reader, tmpl, intermediate, key.Public(), vs.fulcioKey)
	if err != nil {
		return nil, nil, err
	}
	parsedPre, err := ctx509.ParseCertificate(precert)
	if err != nil {
		return nil, nil, err
	}
	tbs, err := ctx509.BuildPrecertTBS(parsedPre.RawTBSCertificate, nil)
	if err != nil {
		return nil, nil, err
	}
	sct := ct.SignedCertificateTimestamp{SCTVersion: ct.V1, Timestamp: uint64(now.UnixMilli())}
	copy(sct.LogID.KeyID[:], vs.ctLog.ID)
	input, err := ct.SerializeSCTSignatureInput(sct, ct.LogEntry{Leaf: ct.MerkleTreeLeaf{
		Version: ct.V1, LeafType: ct.TimestampedEntryLeafType,
		TimestampedEntry: &ct.TimestampedEntry{
			Timestamp: sct.Timestamp, EntryType: ct.PrecertLogEntryType,
			PrecertEntry: &ct.PreCert{IssuerKeyHash: sha256.Sum256(intermediate.RawSubjectPublicKeyInfo), TBSCertificate: tbs},
		},
	}})
	if err != nil {
		return nil, nil, err
	}
	sctSig, err := ecdsa.SignASN1(rand.Reader, vs.ctlogKey, sha256Sum(input))
	if err != nil {
		return nil, nil, err
	}
	sct.Signature = ct.DigitallySigned{
		Algorithm: cttls.SignatureAndHashAlgorithm{Hash: cttls.SHA256, Signature: cttls.ECDSA},
		Signature: sctSig,
	}
	list, err := x509util.MarshalSCTsIntoSCTList([]*ct.SignedCertificateTimestamp{&sct})
	if err != nil {
		return nil, nil, err
	}
	listTLS, err := cttls.Marshal(*list)
	if err != nil {
		return nil, nil, err
	}
	listDER, err := asn1.Marshal(listTLS) // an OCTET STRING around the TLS-encoded list
	if err != nil {
		return nil, nil, err
	}
	tmpl.ExtraExtensions[len(tmpl.ExtraExtensions)-1] = pkix.Extension{Id: oidSCTList, Value: listDER}
	leaf, err := issue(tmpl, intermediate, key.Public(), vs.fulcioKey)
	return leaf, key, err
}

// timestamp is an RFC 3161 response from the virtual TSA over msg.
func (vs *virtualSigstore) timestamp(msg []byte, now time.Time) ([]byte, error) {
	req, err := timestamp.CreateRequest(bytes.NewReader(msg), &timestamp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		return nil, err
	}
	parsed, err := timestamp.ParseRequest(req)
	if err != nil {
		return nil, err
	}
	ts := timestamp.Timestamp{
		HashAlgorithm: parsed.HashAlgorithm, HashedMessage: parsed.HashedMessage,
		Time: now, Policy: oidTSAPolicy,
	}
	return ts.CreateResponseWithOpts(vs.tsa.Leaf, vs.tsaKey, crypto.SHA256)
}

// tlogEntry is a Rekor v1 log entry with its SET and inclusion proof.
type tlogEntry struct {
	kind, version  string
	body           []byte // canonicalized body
	integratedTime int64
	logIndex       int64
	logID          []byte
	set            []byte
	rootHash       []byte
	hashes         [][]byte
	checkpoint     string
}

func (vs *virtualSigstore) rekorEntry(kind, version string, envBytes []byte, certPEM string, now time.Time) (*tlogEntry, error) {
	ctx := context.Background()
	// As the Rekor server does: propose, validate/complete, canonicalize (JCS).
	pe, err := rekortypes.NewProposedEntry(ctx, kind, version, rekortypes.ArtifactProperties{
		ArtifactBytes: envBytes, PublicKeyBytes: [][]byte{[]byte(certPEM)},
	})
	if err != nil {
		return nil, fmt.Errorf("rekor %s %s entry: %w", kind, version, err)
	}
	impl, err := rekortypes.CreateVersionedEntry(pe)
	if err != nil {
		return nil, fmt.Errorf("rekor %s %s entry: %w", kind, version, err)
	}
	body, err := rekortypes.CanonicalizeEntry(ctx, impl)
	if err != nil {
		return nil, fmt.Errorf("rekor %s %s entry: %w", kind, version, err)
	}
	e := &tlogEntry{kind: kind, version: version, body: body, integratedTime: now.Unix(),
		logIndex: logIndexOffset + proofIndex, logID: vs.rekorLog.ID}

	// SET: the log's signature over the JCS form of {body, integratedTime, logID, logIndex}.
	payload, err := json.Marshal(tlog.RekorPayload{Body: base64.StdEncoding.EncodeToString(body),
		IntegratedTime: e.integratedTime, LogIndex: e.logIndex, LogID: hex.EncodeToString(e.logID)})
	if err != nil {
		return nil, err
	}
	if payload, err = jsoncanonicalizer.Transform(payload); err != nil {
		return nil, err
	}
	if e.set, err = ecdsa.SignASN1(rand.Reader, vs.rekorKey, sha256Sum(payload)); err != nil {
		return nil, err
	}

	// Inclusion proof (RFC 6962) in a small tree of random other leaves, and a
	// signed checkpoint for its root.
	leaves := make([][]byte, proofTreeSize)
	for i := range leaves {
		leaves[i] = make([]byte, sha256.Size)
		if _, err := rand.Read(leaves[i]); err != nil {
			return nil, err
		}
	}
	leaves[proofIndex] = sha256Sum(append([]byte{0}, body...))
	e.rootHash, e.hashes = merkleRoot(leaves), auditPath(proofIndex, leaves)
	signer, err := signature.LoadECDSASignerVerifier(vs.rekorKey, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	cp, err := rekorutil.CreateAndSignCheckpoint(ctx, rekorHost, rekorTreeID, proofTreeSize, e.rootHash, signer)
	if err != nil {
		return nil, err
	}
	e.checkpoint = string(cp)
	return e, nil
}

// RFC 6962 section 2.1 over leaf hashes: split is the largest power of two
// below n, merkleRoot is MTH and auditPath is PATH(m, D[n]).
func split(n int) int {
	k := 1
	for k*2 < n {
		k *= 2
	}
	return k
}

func merkleRoot(h [][]byte) []byte {
	if len(h) == 1 {
		return h[0]
	}
	k := split(len(h))
	return sha256Sum(append(append([]byte{1}, merkleRoot(h[:k])...), merkleRoot(h[k:])...))
}

func auditPath(m int, h [][]byte) [][]byte {
	if len(h) == 1 {
		return nil
	}
	if k := split(len(h)); m < k {
		return append(auditPath(m, h[:k]), merkleRoot(h[k:]))
	} else {
		return append(auditPath(m-k, h[k:]), merkleRoot(h[:k]))
	}
}

// ---------------------------------------------------------------- output

func makeBundle(leaf *x509.Certificate, statement, sig, tsr []byte, e *tlogEntry) ([]byte, error) {
	vm := &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: leaf.Raw}},
		TimestampVerificationData: &protobundle.TimestampVerificationData{
			Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: tsr}},
		},
	}
	if e != nil {
		vm.TlogEntries = []*protorekor.TransparencyLogEntry{{
			LogIndex:          e.logIndex,
			LogId:             &protocommon.LogId{KeyId: e.logID},
			KindVersion:       &protorekor.KindVersion{Kind: e.kind, Version: e.version},
			IntegratedTime:    e.integratedTime,
			InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: e.set},
			InclusionProof:    &protorekor.InclusionProof{LogIndex: proofIndex, RootHash: e.rootHash, TreeSize: proofTreeSize, Hashes: e.hashes, Checkpoint: &protorekor.Checkpoint{Envelope: e.checkpoint}},
			CanonicalizedBody: e.body,
		}}
	}
	pb := &protobundle.Bundle{
		MediaType:            bundleMediaType,
		VerificationMaterial: vm,
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: statement, PayloadType: inTotoType, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	// sigstore-go's own bundle checks must accept what we write.
	if _, err := sgbundle.NewBundle(pb); err != nil {
		return nil, fmt.Errorf("bundle self-check: %w", err)
	}
	raw, err := protojson.Marshal(pb)
	if err != nil {
		return nil, err
	}
	var pretty bytes.Buffer // protojson's spacing is deliberately unstable; normalise it
	err = json.Indent(&pretty, raw, "", "  ")
	return pretty.Bytes(), err
}

type envelope struct {
	Payload     string        `json:"payload"`
	PayloadType string        `json:"payloadType"`
	Signatures  []envelopeSig `json:"signatures"`
}

type envelopeSig struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// cosign v2's pkg/cosign/bundle RekorBundle and RFC3161Timestamp, whose JSON
// form is the value of the dev.sigstore.cosign/bundle and
// dev.sigstore.cosign/rfc3161timestamp annotations.
type rekorBundle struct {
	SignedEntryTimestamp []byte
	Payload              rekorPayload
}

type rekorPayload struct {
	Body           interface{} `json:"body"`
	IntegratedTime int64       `json:"integratedTime"`
	LogIndex       int64       `json:"logIndex"`
	LogID          string      `json:"logID"`
}

type rfc3161Timestamp struct {
	SignedRFC3161Timestamp []byte
}

func makeLegacy(statement []byte, env envelope, envBytes []byte, leafPEM, chainPEM string, e *tlogEntry, tsr []byte) ([]byte, error) {
	// What cosign v2 `attest` puts on the layer (pkg/oci/static): the
	// predicateType, an empty signature (it is inside the envelope), the
	// certificate and chain, the Rekor bundle, and the timestamp if any.
	ann := map[string]string{
		"dev.cosignproject.cosign/signature": "",
		"dev.sigstore.cosign/certificate":    leafPEM,
		"dev.sigstore.cosign/chain":          chainPEM,
	}
	var st struct {
		PredicateType string `json:"predicateType"`
	}
	if json.Unmarshal(statement, &st) == nil && st.PredicateType != "" {
		ann["predicateType"] = st.PredicateType
	}
	if e != nil {
		b, err := json.Marshal(rekorBundle{SignedEntryTimestamp: e.set, Payload: rekorPayload{
			Body: base64.StdEncoding.EncodeToString(e.body), IntegratedTime: e.integratedTime,
			LogIndex: e.logIndex, LogID: hex.EncodeToString(e.logID)}})
		if err != nil {
			return nil, err
		}
		ann["dev.sigstore.cosign/bundle"] = string(b)
	}
	if tsr != nil {
		b, err := json.Marshal(rfc3161Timestamp{SignedRFC3161Timestamp: tsr})
		if err != nil {
			return nil, err
		}
		ann["dev.sigstore.cosign/rfc3161timestamp"] = string(b)
	}
	return json.MarshalIndent(struct {
		MediaType   string            `json:"mediaType"`
		Layer       string            `json:"layer"`
		Envelope    envelope          `json:"envelope"`
		Annotations map[string]string `json:"annotations"`
	}{"application/vnd.dsse.envelope.v1+json", string(envBytes), env, ann}, "", "  ")
}

// ---------------------------------------------------------------- helpers

func sha256Sum(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

func randomSerial() *big.Int {
	// 20 random bytes with the top bit clear: positive, as RFC 5280 wants.
	b := make([]byte, 20)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		panic(err)
	}
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

func pemCert(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// writeAtomic writes via a temporary file and a rename, so concurrent readers
// never see a partial file.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
