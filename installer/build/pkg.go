package main

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"debug/macho"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"text/template"

	"github.com/smtpshim/smtpshim/installer/macpkg"
)

const (
	pkgID   = "org.smtpshim.pkg"
	appPath = "./Applications/smtpshim.app"
	admin   = 80 // the admin group, owner of /Applications and its apps
)

// macPayload is what the pkg installs, in Sort order, and the
// postinstall script.
func (b *builder) macPayload() (payload []macpkg.Entry, post []byte, err error) {
	bin, err := b.darwinBinary()
	if err != nil {
		return nil, nil, err
	}
	icns, err := b.icons.ICNS()
	if err != nil {
		return nil, nil, err
	}
	plist, err := b.asset("macos/Info.plist")
	if err != nil {
		return nil, nil, err
	}
	var info bytes.Buffer
	if err := template.Must(template.New("plist").Parse(string(plist))).Execute(&info, map[string]string{
		"Version": b.v.MacOS(), "Year": b.epoch.Format("2006"),
	}); err != nil {
		return nil, nil, err
	}
	agent, err := b.asset("macos/org.smtpshim.smtpshim.plist")
	if err != nil {
		return nil, nil, err
	}
	if post, err = b.asset("macos/postinstall"); err != nil {
		return nil, nil, err
	}

	mt := uint32(b.epoch.Unix())
	dir := func(p string, mode fs.FileMode, gid uint32) macpkg.Entry {
		return macpkg.Entry{Path: p, Mode: fs.ModeDir | mode, GID: gid, MTime: mt}
	}
	file := func(p string, mode fs.FileMode, data []byte) macpkg.Entry {
		return macpkg.Entry{Path: p, Mode: mode, GID: admin, MTime: mt, Data: data}
	}
	payload, err = macpkg.Sort([]macpkg.Entry{
		// The system's own folders, with the modes and owners they have.
		dir(".", 0o755, 0),
		dir("./Applications", 0o775, admin),
		dir("./Library", 0o755, 0),
		dir("./Library/LaunchAgents", 0o755, 0),
		// Ours: root:admin, as pkgbuild records an app.
		dir(appPath, 0o755, admin),
		dir(appPath+"/Contents", 0o755, admin),
		dir(appPath+"/Contents/MacOS", 0o755, admin),
		dir(appPath+"/Contents/Resources", 0o755, admin),
		file(appPath+"/Contents/Info.plist", 0o644, info.Bytes()),
		file(appPath+"/Contents/PkgInfo", 0o644, []byte("APPL????")),
		file(appPath+"/Contents/MacOS/smtpshim", 0o755, bin),
		file(appPath+"/Contents/Resources/smtpshim.icns", 0o644, icns),
		file("./Library/LaunchAgents/org.smtpshim.smtpshim.plist", 0o644, agent),
	})
	return payload, post, err
}

// pkg builds dist/smtpshim-V.pkg: a flat package (xar) with a
// Distribution and one component package, whose Payload installs
// /Applications/smtpshim.app and the LaunchAgent that starts it at login.
func (b *builder) pkg() error {
	payload, post, err := b.macPayload()
	if err != nil {
		return err
	}
	mt := uint32(b.epoch.Unix())
	payloadCpio, err := macpkg.Archive(payload)
	if err != nil {
		return err
	}
	bom, err := macpkg.BOM(payload)
	if err != nil {
		return err
	}
	scripts, err := macpkg.Archive([]macpkg.Entry{
		{Path: ".", Mode: fs.ModeDir | 0o755, MTime: mt},
		{Path: "./postinstall", Mode: 0o755, MTime: mt, Data: post},
	})
	if err != nil {
		return err
	}
	var files, kbytes int
	for _, e := range payload {
		files++
		kbytes += (len(e.Data) + 1023) / 1024
	}

	data := map[string]any{
		"ID": pkgID, "Version": b.v.MacOS(), "Files": files, "KBytes": kbytes,
		"App": appPath, "BundleID": "org.smtpshim.smtpshim",
	}
	root := filepath.Join(b.work, "pkg")
	for name, tmpl := range map[string]string{"Distribution": distributionXML, "smtpshim.pkg/PackageInfo": packageInfoXML} {
		if err := b.writeTemplate(filepath.Join(root, name), tmpl, data); err != nil {
			return err
		}
	}
	for name, content := range map[string][]byte{"Bom": bom, "Payload": payloadCpio, "Scripts": scripts} {
		if _, err := b.write(filepath.Join(root, "smtpshim.pkg", name), content, 0o644); err != nil {
			return err
		}
	}
	for _, d := range []string{filepath.Join(root, "smtpshim.pkg"), root} {
		os.Chmod(d, 0o755)
		os.Chtimes(d, b.epoch, b.epoch)
	}

	target := filepath.Join(b.out, fmt.Sprintf("smtpshim-%s.pkg", b.v.FileName()))
	// Named one by one, without recursion, so the order does not depend
	// on the file system's directory order.
	cmd := exec.Command("bsdtar", "--format", "xar",
		"--options", "xar:compression=none,xar:checksum=sha1,xar:toc-checksum=sha1",
		"--uid", "0", "--gid", "0", "--uname", "root", "--gname", "wheel",
		"--no-recursion", "-cf", target, "-C", root,
		"Distribution", "smtpshim.pkg", "smtpshim.pkg/Bom", "smtpshim.pkg/Payload",
		"smtpshim.pkg/PackageInfo", "smtpshim.pkg/Scripts")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bsdtar: %w\n%s", err, stderr.String())
	}
	if err := b.reproducibleXar(target); err != nil {
		return err
	}
	fmt.Println("wrote", target)
	return nil
}

var (
	xarTimeRE  = regexp.MustCompile(`<(creation-time|ctime|atime|mtime)>[^<]*</(?:creation-time|ctime|atime|mtime)>`)
	xarDataRE  = regexp.MustCompile(`<length>(\d+)</length>\s*<offset>(\d+)</offset>`)
	xarInodeRE = regexp.MustCompile(`<(inode|deviceno)>[^<]*</(?:inode|deviceno)>`)
)

// reproducibleXar rewrites the xar's table of contents so that it says
// nothing of when and where it was built: bsdtar records the build time,
// each file's inode and device, and its ctime and atime. Every time
// becomes SOURCE_DATE_EPOCH and the inode and device numbers zero; the
// TOC is compressed again and its SHA-1 (the first 20 bytes of the heap,
// where the TOC says it is) written anew. The files' offsets in the heap
// do not change.
func (b *builder) reproducibleXar(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(raw) < 28 || string(raw[:4]) != "xar!" || binary.BigEndian.Uint16(raw[4:]) != 28 || binary.BigEndian.Uint32(raw[24:]) != 1 {
		return fmt.Errorf("%s: not a xar archive with a SHA-1 TOC checksum", path)
	}
	tocLen := binary.BigEndian.Uint64(raw[8:])
	zr, err := zlib.NewReader(bytes.NewReader(raw[28 : 28+tocLen]))
	if err != nil {
		return err
	}
	toc, err := io.ReadAll(zr)
	if err != nil {
		return err
	}
	if !bytes.Contains(toc, []byte("<checksum style=\"sha1\">\n   <offset>0</offset>\n   <size>20</size>")) {
		return fmt.Errorf("%s: the TOC checksum is not the first 20 bytes of the heap", path)
	}
	ts := b.epoch.Format("2006-01-02T15:04:05")
	toc = xarTimeRE.ReplaceAllFunc(toc, func(m []byte) []byte {
		tag := xarTimeRE.FindSubmatch(m)[1]
		z := "Z"
		if string(tag) == "creation-time" {
			z = ""
		}
		return []byte(fmt.Sprintf("<%s>%s%s</%s>", tag, ts, z, tag))
	})
	toc = xarInodeRE.ReplaceAll(toc, []byte("<$1>0</$1>"))
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestCompression)
	zw.Write(toc)
	zw.Close()
	heap := raw[28+tocLen:]
	// bsdtar leaves 20 bytes after the last file that nothing refers to
	// (the start of its TOC stream, which changed): the heap ends where
	// the last file does.
	end := int64(20)
	for _, m := range xarDataRE.FindAllSubmatch(toc, -1) {
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		off, _ := strconv.ParseInt(string(m[2]), 10, 64)
		end = max(end, off+n)
	}
	if end > int64(len(heap)) {
		return fmt.Errorf("%s: a file lies beyond the end of the archive", path)
	}
	heap = heap[:end]
	sum := sha1.Sum(z.Bytes())
	var out bytes.Buffer
	out.Write(raw[:8])
	binary.Write(&out, binary.BigEndian, [2]uint64{uint64(z.Len()), uint64(len(toc))})
	out.Write(raw[24:28])
	out.Write(z.Bytes())
	out.Write(sum[:])
	out.Write(heap[20:])
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Chtimes(path, b.epoch, b.epoch)
}

func (b *builder) writeTemplate(path, tmpl string, data any) error {
	var out bytes.Buffer
	if err := template.Must(template.New(filepath.Base(path)).Parse(tmpl)).Execute(&out, data); err != nil {
		return err
	}
	_, err := b.write(path, out.Bytes(), 0o644)
	return err
}

// pkgroot stages the same package for Apple's own tools, for a signed
// release built on a Mac (see the README): dist/macos/root (the payload),
// dist/macos/scripts (postinstall) and dist/macos/Distribution, for
// pkgbuild --root --scripts and productbuild --distribution.
func (b *builder) pkgroot() error {
	payload, post, err := b.macPayload()
	if err != nil {
		return err
	}
	stage := filepath.Join(b.out, "macos")
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	var kbytes int
	for _, e := range payload {
		kbytes += (len(e.Data) + 1023) / 1024
		p := filepath.Join(stage, "root", filepath.FromSlash(e.Path))
		if e.Mode.IsDir() {
			if err := os.MkdirAll(p, e.Mode.Perm()); err != nil {
				return err
			}
			continue
		}
		if _, err := b.write(p, e.Data, e.Mode.Perm()); err != nil {
			return err
		}
	}
	if _, err := b.write(filepath.Join(stage, "scripts", "postinstall"), post, 0o755); err != nil {
		return err
	}
	data := map[string]any{"ID": pkgID, "Version": b.v.MacOS(), "KBytes": kbytes}
	if err := b.writeTemplate(filepath.Join(stage, "Distribution"), distributionXML, data); err != nil {
		return err
	}
	fmt.Println("staged", stage, "for pkgbuild and productbuild")
	return nil
}

// darwinBinary is the Mac-built tray binary given with DARWIN_BIN, or
// else a universal (arm64 + x86_64) build of the headless relay: the tray
// needs cgo and the macOS SDK, which this machine does not have.
func (b *builder) darwinBinary() ([]byte, error) {
	if b.darwinBin != "" {
		data, err := os.ReadFile(b.darwinBin)
		if err != nil {
			return nil, err
		}
		if _, err := macho.NewFatFile(bytes.NewReader(data)); err != nil {
			if _, err := macho.NewFile(bytes.NewReader(data)); err != nil {
				return nil, fmt.Errorf("DARWIN_BIN=%s is not a macOS program (Mach-O): %w", b.darwinBin, err)
			}
		}
		fmt.Println("pkg: packaging the macOS binary", b.darwinBin)
		return data, nil
	}
	fmt.Println("pkg: no DARWIN_BIN given: packaging the headless darwin build (no tray icon);",
		"build the tray on a Mac and pass DARWIN_BIN=path for a release")
	var slices [][]byte
	for _, arch := range []string{"arm64", "amd64"} {
		out := filepath.Join(b.work, "darwin-"+arch, "smtpshim")
		if err := b.goBuild("darwin", arch, out, nil); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(out)
		if err != nil {
			return nil, err
		}
		slices = append(slices, data)
	}
	return universal(slices)
}

// universal joins thin Mach-O files into one universal ("fat") file, as
// lipo does: a big-endian header, one record per architecture, and each
// slice aligned to 16 KiB (the arm64 page size).
func universal(slices [][]byte) ([]byte, error) {
	const align = 14
	var hdr bytes.Buffer
	binary.Write(&hdr, binary.BigEndian, [2]uint32{macho.MagicFat, uint32(len(slices))})
	off := uint32(1 << align)
	var body []byte
	for _, s := range slices {
		f, err := macho.NewFile(bytes.NewReader(s))
		if err != nil {
			return nil, err
		}
		binary.Write(&hdr, binary.BigEndian, [5]uint32{uint32(f.Cpu), f.SubCpu, off, uint32(len(s)), align})
		body = append(body, s...)
		next := off + uint32(len(s))
		next = (next + 1<<align - 1) &^ (1<<align - 1)
		body = append(body, make([]byte, int(next-off)-len(s))...)
		off = next
	}
	out := make([]byte, 1<<align, int(off))
	copy(out, hdr.Bytes())
	return append(out, body...), nil
}

const packageInfoXML = `<?xml version="1.0" encoding="utf-8"?>
<pkg-info format-version="2" identifier="{{.ID}}" version="{{.Version}}" install-location="/" auth="root" relocatable="false" overwrite-permissions="false" generator-version="smtpshim installer/build">
  <payload numberOfFiles="{{.Files}}" installKBytes="{{.KBytes}}"/>
  <bundle path="{{.App}}" id="{{.BundleID}}" CFBundleShortVersionString="{{.Version}}" CFBundleVersion="{{.Version}}"/>
  <bundle-version>
    <bundle id="{{.BundleID}}"/>
  </bundle-version>
  <upgrade-bundle>
    <bundle id="{{.BundleID}}"/>
  </upgrade-bundle>
  <scripts>
    <postinstall file="./postinstall"/>
  </scripts>
</pkg-info>
`

const distributionXML = `<?xml version="1.0" encoding="utf-8"?>
<installer-gui-script minSpecVersion="2">
  <title>smtpshim</title>
  <options customize="never" require-scripts="false" rootVolumeOnly="true" hostArchitectures="arm64,x86_64"/>
  <domains enable_anywhere="false" enable_currentUserHome="false" enable_localSystem="true"/>
  <volume-check>
    <allowed-os-versions>
      <os-version min="12.0"/>
    </allowed-os-versions>
  </volume-check>
  <choices-outline>
    <line choice="default">
      <line choice="{{.ID}}"/>
    </line>
  </choices-outline>
  <choice id="default"/>
  <choice id="{{.ID}}" visible="false">
    <pkg-ref id="{{.ID}}"/>
  </choice>
  <pkg-ref id="{{.ID}}" version="{{.Version}}" onConclusion="none" installKBytes="{{.KBytes}}">#smtpshim.pkg</pkg-ref>
</installer-gui-script>
`
