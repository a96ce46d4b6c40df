//go:build installers

package test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"crypto/sha1"
	"debug/macho"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestPkg reads the macOS package with readers written here, trusting no
// extractor (bsdtar unpacks a corrupted xar with exit status 0): the xar
// header, its TOC checksum, each file's SHA-1, the exact file list, the
// XML documents, the Payload and the BOM.
func TestPkg(t *testing.T) {
	v := builtVersion(t)
	raw, err := os.ReadFile(distFile(t, "smtpshim-"+v.FileName()+".pkg"))
	if err != nil {
		t.Fatal(err)
	}
	files := readXar(t, raw)

	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	want := []string{"Distribution", "smtpshim.pkg", "smtpshim.pkg/Bom", "smtpshim.pkg/PackageInfo", "smtpshim.pkg/Payload", "smtpshim.pkg/Scripts"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("the pkg holds %v, want exactly %v", names, want)
	}

	dir := t.TempDir()
	for _, n := range []string{"Distribution", "smtpshim.pkg/PackageInfo"} {
		p := filepath.Join(dir, filepath.Base(n))
		os.WriteFile(p, files[n], 0o644)
		run(t, "xmllint", "--noout", p)
	}
	if d := string(files["Distribution"]); !strings.Contains(d, `version="`+v.MacOS()+`"`) || !strings.Contains(d, "#smtpshim.pkg") {
		t.Errorf("Distribution does not refer to smtpshim.pkg %s:\n%s", v.MacOS(), d)
	}
	pi := string(files["smtpshim.pkg/PackageInfo"])
	for _, s := range []string{`version="` + v.MacOS() + `"`, `install-location="/"`, `<postinstall file="./postinstall"/>`} {
		if !strings.Contains(pi, s) {
			t.Errorf("PackageInfo lacks %s:\n%s", s, pi)
		}
	}

	// The Payload: gzip'd odc cpio, ./ paths.
	payload := readCpio(t, files["smtpshim.pkg/Payload"])
	app := "./Applications/smtpshim.app"
	for _, p := range []string{app, app + "/Contents/Info.plist", app + "/Contents/MacOS/smtpshim", app + "/Contents/Resources/smtpshim.icns", "./Library/LaunchAgents/org.smtpshim.smtpshim.plist"} {
		e, ok := payload[p]
		if !ok {
			t.Errorf("the Payload has no %s", p)
			continue
		}
		if e.uid != 0 || e.gid != 80 {
			t.Errorf("%s is owned by %d:%d, want 0:80", p, e.uid, e.gid)
		}
	}
	if m := payload[app+"/Contents/MacOS/smtpshim"].mode; m != 0o100755 {
		t.Errorf("the app binary has mode %o", m)
	}
	bin := payload[app+"/Contents/MacOS/smtpshim"].data
	if _, err := macho.NewFatFile(bytes.NewReader(bin)); err != nil {
		if _, err := macho.NewFile(bytes.NewReader(bin)); err != nil {
			t.Errorf("the app binary is not a Mach-O file: %v", err)
		}
	}
	plist := string(payload[app+"/Contents/Info.plist"].data)
	for _, s := range []string{"<key>LSUIElement</key>\n\t<true/>", "<string>" + v.MacOS() + "</string>", "<key>CFBundleIconFile</key>\n\t<string>smtpshim</string>"} {
		if !strings.Contains(plist, s) {
			t.Errorf("Info.plist lacks %q", s)
		}
	}
	if icns := payload[app+"/Contents/Resources/smtpshim.icns"].data; len(icns) < 8 || string(icns[:4]) != "icns" || int(binary.BigEndian.Uint32(icns[4:])) != len(icns) {
		t.Errorf("smtpshim.icns is not an ICNS file")
	}
	agent := string(payload["./Library/LaunchAgents/org.smtpshim.smtpshim.plist"].data)
	for _, s := range []string{"<key>RunAtLoad</key>\n\t<true/>", "<key>SuccessfulExit</key>\n\t\t<false/>", "/Applications/smtpshim.app/Contents/MacOS/smtpshim", "<string>--at-login</string>"} {
		if !strings.Contains(agent, s) {
			t.Errorf("the LaunchAgent lacks %q", s)
		}
	}
	scripts := readCpio(t, files["smtpshim.pkg/Scripts"])
	if s, ok := scripts["./postinstall"]; !ok || s.mode != 0o100755 || !strings.Contains(string(s.data), "launchctl bootstrap") {
		t.Errorf("Scripts has no executable postinstall that bootstraps the agent: %+v", s)
	}
	for _, p := range []string{filepath.Join(dir, "postinstall")} {
		os.WriteFile(p, scripts["./postinstall"].data, 0o755)
		run(t, "sh", "-n", p)
	}

	// The BOM lists exactly the Payload, with the same metadata.
	bom := readBOM(t, files["smtpshim.pkg/Bom"])
	if len(bom) != len(payload) {
		t.Errorf("the BOM has %d paths, the Payload %d", len(bom), len(payload))
	}
	for p, e := range payload {
		b, ok := bom[p]
		if !ok {
			t.Errorf("the BOM lacks %s", p)
			continue
		}
		if b.mode != e.mode || b.uid != e.uid || b.gid != e.gid || b.size != uint32(len(e.data)) {
			t.Errorf("%s: BOM says mode %o %d:%d size %d, the Payload mode %o %d:%d size %d",
				p, b.mode, b.uid, b.gid, b.size, e.mode, e.uid, e.gid, len(e.data))
		}
	}
}

// --- xar ---------------------------------------------------------------

type xarTOC struct {
	Checksum struct {
		Style  string `xml:"style,attr"`
		Offset int64  `xml:"offset"`
		Size   int64  `xml:"size"`
	} `xml:"toc>checksum"`
	Files []xarFile `xml:"toc>file"`
}

type xarFile struct {
	Name string `xml:"name"`
	Type string `xml:"type"`
	Data *struct {
		Offset   int64 `xml:"offset"`
		Size     int64 `xml:"size"`
		Length   int64 `xml:"length"`
		Encoding struct {
			Style string `xml:"style,attr"`
		} `xml:"encoding"`
		Archived struct {
			Style string `xml:"style,attr"`
			Sum   string `xml:",chardata"`
		} `xml:"archived-checksum"`
		Extracted struct {
			Style string `xml:"style,attr"`
			Sum   string `xml:",chardata"`
		} `xml:"extracted-checksum"`
	} `xml:"data"`
	Files []xarFile `xml:"file"`
}

// readXar checks a xar archive and returns its files by path (a
// directory maps to nil).
func readXar(t *testing.T, raw []byte) map[string][]byte {
	t.Helper()
	if len(raw) < 28 || string(raw[:4]) != "xar!" {
		t.Fatalf("not a xar archive")
	}
	hsize := int(binary.BigEndian.Uint16(raw[4:]))
	ver := binary.BigEndian.Uint16(raw[6:])
	tocLen := binary.BigEndian.Uint64(raw[8:])
	tocRaw := binary.BigEndian.Uint64(raw[16:])
	alg := binary.BigEndian.Uint32(raw[24:])
	if hsize != 28 || ver != 1 || alg != 1 {
		t.Fatalf("xar header: size %d version %d checksum %d, want 28, 1, 1 (SHA-1)", hsize, ver, alg)
	}
	tocZ := raw[hsize : hsize+int(tocLen)]
	zr, err := zlib.NewReader(bytes.NewReader(tocZ))
	if err != nil {
		t.Fatal(err)
	}
	tocXML, err := io.ReadAll(zr)
	if err != nil || uint64(len(tocXML)) != tocRaw {
		t.Fatalf("the TOC: %v, %d bytes, header says %d", err, len(tocXML), tocRaw)
	}
	var toc xarTOC
	if err := xml.Unmarshal(tocXML, &toc); err != nil {
		t.Fatal(err)
	}
	heap := raw[hsize+int(tocLen):]
	if toc.Checksum.Style != "sha1" || toc.Checksum.Size != 20 {
		t.Fatalf("TOC checksum %+v", toc.Checksum)
	}
	sum := sha1.Sum(tocZ)
	if !bytes.Equal(heap[toc.Checksum.Offset:toc.Checksum.Offset+20], sum[:]) {
		t.Fatal("the TOC checksum in the heap does not match the TOC")
	}
	out := map[string][]byte{}
	var walk func(prefix string, fs []xarFile)
	walk = func(prefix string, fs []xarFile) {
		for _, f := range fs {
			p := prefix + f.Name
			if f.Type == "directory" {
				out[p] = nil
				walk(p+"/", f.Files)
				continue
			}
			if f.Data == nil {
				t.Errorf("%s has no data", p)
				continue
			}
			d := f.Data
			if d.Encoding.Style != "application/octet-stream" || d.Length != d.Size {
				t.Errorf("%s is compressed (%s); the pkg must store files uncompressed", p, d.Encoding.Style)
			}
			if d.Offset+d.Length > int64(len(heap)) {
				t.Fatalf("%s lies beyond the heap", p)
			}
			data := heap[d.Offset : d.Offset+d.Length]
			s := sha1.Sum(data)
			for _, c := range []struct{ style, sum string }{{d.Archived.Style, d.Archived.Sum}, {d.Extracted.Style, d.Extracted.Sum}} {
				if c.style != "sha1" || c.sum != hex.EncodeToString(s[:]) {
					t.Errorf("%s: checksum %s %s, the data hashes to %x", p, c.style, c.sum, s)
				}
			}
			out[p] = data
		}
	}
	walk("", toc.Files)
	return out
}

// --- cpio (odc) ----------------------------------------------------------

type cpioEntry struct {
	mode, uid, gid uint32
	data           []byte
}

func readCpio(t *testing.T, gz []byte) map[string]cpioEntry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]cpioEntry{}
	for {
		if len(raw) < 76 || string(raw[:6]) != "070707" {
			t.Fatalf("bad odc cpio header: %q", raw[:min(len(raw), 76)])
		}
		field := func(off, n int) uint64 {
			v, err := strconv.ParseUint(string(raw[off:off+n]), 8, 64)
			if err != nil {
				t.Fatalf("cpio field %q: %v", raw[off:off+n], err)
			}
			return v
		}
		mode, uid, gid := field(18, 6), field(24, 6), field(30, 6)
		namesize, filesize := int(field(59, 6)), int(field(65, 11))
		name := string(raw[76 : 76+namesize-1])
		data := raw[76+namesize : 76+namesize+filesize]
		raw = raw[76+namesize+filesize:]
		if name == "TRAILER!!!" {
			break
		}
		if name != "." && !strings.HasPrefix(name, "./") {
			t.Errorf("cpio path %q does not start with ./", name)
		}
		out[name] = cpioEntry{uint32(mode), uint32(uid), uint32(gid), data}
	}
	return out
}

// --- BOM -----------------------------------------------------------------

type bomEntry struct {
	mode, uid, gid, size uint32
}

// readBOM parses a BOM as Installer would: header, block table, named
// blocks, the Paths tree (its leaves in order, following the forward
// links), each path's parent and metadata.
func readBOM(t *testing.T, raw []byte) map[string]bomEntry {
	t.Helper()
	u32 := func(b []byte, off int) uint32 { return binary.BigEndian.Uint32(b[off:]) }
	if string(raw[:8]) != "BOMStore" || u32(raw, 8) != 1 {
		t.Fatalf("not a BOM (magic %q)", raw[:8])
	}
	nonNull := u32(raw, 12)
	indexOff, indexLen, varsOff := int(u32(raw, 16)), int(u32(raw, 20)), int(u32(raw, 24))
	if indexOff+indexLen != len(raw) && varsOff+int(u32(raw, 28)) != len(raw) {
		t.Errorf("neither the block table nor the named blocks end the file")
	}
	nblocks := int(u32(raw, indexOff))
	if nblocks%256 != 0 {
		t.Errorf("block table has %d entries, not a whole number of 256-entry runs", nblocks)
	}
	type ptr struct{ off, n int }
	blocks := make([]ptr, nblocks)
	var used uint32
	for i := range blocks {
		blocks[i] = ptr{int(u32(raw, indexOff+4+8*i)), int(u32(raw, indexOff+8+8*i))}
		if blocks[i].off != 0 {
			used++
		}
	}
	if used != nonNull {
		t.Errorf("header says %d non-null blocks, the table has %d", nonNull, used)
	}
	block := func(i uint32) []byte {
		if int(i) >= len(blocks) || blocks[i].off == 0 {
			t.Fatalf("block %d does not exist", i)
		}
		return raw[blocks[i].off : blocks[i].off+blocks[i].n]
	}
	named := map[string]uint32{}
	n := int(u32(raw, varsOff))
	p := varsOff + 4
	for i := 0; i < n; i++ {
		idx := u32(raw, p)
		l := int(raw[p+4])
		named[string(raw[p+5:p+5+l])] = idx
		p += 5 + l
	}
	for _, name := range []string{"BomInfo", "Paths", "HLIndex", "VIndex", "Size64"} {
		if _, ok := named[name]; !ok {
			t.Errorf("no named block %s", name)
		}
	}
	tree := block(named["Paths"])
	if string(tree[:4]) != "tree" || u32(tree, 4) != 1 || u32(tree, 12) != 4096 {
		t.Fatalf("Paths is not a version 1 tree of 4096-byte nodes")
	}
	pathCount := u32(tree, 16)
	if info := block(named["BomInfo"]); u32(info, 0) != 1 || u32(info, 4) != pathCount {
		t.Errorf("BomInfo counts %d paths, the Paths tree %d", u32(info, 4), pathCount)
	}
	// Down to the first leaf, then along the leaves.
	node := block(u32(tree, 8))
	for binary.BigEndian.Uint16(node) == 0 {
		node = block(u32(node, 12))
	}
	type rec struct {
		parent uint32
		name   string
		meta   []byte
	}
	recs := map[uint32]rec{}
	var order []uint32
	for {
		count := int(binary.BigEndian.Uint16(node[2:]))
		for i := 0; i < count; i++ {
			key, val := block(u32(node, 12+8*i)), block(u32(node, 16+8*i))
			id := u32(key, 0)
			name := string(bytes.TrimRight(val[4:], "\x00"))
			recs[id] = rec{u32(val, 0), name, block(u32(key, 4))}
			order = append(order, id)
		}
		next := u32(node, 4)
		if next == 0 {
			break
		}
		node = block(next)
	}
	if uint32(len(order)) != pathCount {
		t.Errorf("the tree header counts %d paths, the leaves hold %d", pathCount, len(order))
	}
	full := func(id uint32) string {
		var parts []string
		for id != 0 {
			r, ok := recs[id]
			if !ok {
				t.Fatalf("path record %d missing", id)
			}
			parts = append([]string{r.name}, parts...)
			id = r.parent
		}
		return strings.Join(parts, "/")
	}
	out := map[string]bomEntry{}
	depth := -1
	for i, id := range order {
		if id != uint32(i+1) {
			t.Errorf("path %d has id %d: ids must count from 1 in order", i, id)
		}
		path := full(id)
		if d := strings.Count(path, "/"); d < depth {
			t.Errorf("%s comes after a deeper path: not breadth-first", path)
		} else {
			depth = d
		}
		m := recs[id].meta
		typ := m[0]
		e := bomEntry{mode: uint32(binary.BigEndian.Uint16(m[4:])), uid: u32(m, 6), gid: u32(m, 10), size: u32(m, 18)}
		wantType := map[uint32]byte{0o100000: 1, 0o040000: 2, 0o120000: 3}[e.mode&0o170000]
		if typ != wantType {
			t.Errorf("%s: entry type %d, mode %o", path, typ, e.mode)
		}
		out[path] = e
	}
	return out
}

// TestReproducible builds the packages again, from the same sources,
// version and SOURCE_DATE_EPOCH, and expects the same bytes. (The MSI is
// reproducible only with faketime installed, which .ci/deps does.)
func TestReproducible(t *testing.T) {
	v := builtVersion(t)
	out := t.TempDir()
	build := exec.Command("go", "run", "./installer/build", "-version", v.String(), "-out", out, "deb", "pkg", "msi")
	build.Dir = repoRoot(t)
	if o, err := build.CombinedOutput(); err != nil {
		t.Fatalf("rebuilding: %v\n%s", err, o)
	}
	for _, name := range []string{"smtpshim_" + v.Debian() + "_amd64.deb", "smtpshim-sendmail_" + v.Debian() + "_all.deb", "smtpshim-" + v.FileName() + ".pkg", "smtpshim-" + v.FileName() + "-x64.msi"} {
		a, err := os.ReadFile(distFile(t, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs when built again (%x vs %x)", name, sha1.Sum(a), sha1.Sum(b))
		}
	}
}
