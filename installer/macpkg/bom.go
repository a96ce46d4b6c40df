package macpkg

import (
	"bytes"
	"debug/macho"
	"encoding/binary"
	"fmt"
	"io/fs"
	"sort"
)

// The BOM ("Bill of Materials") lists every path of a payload with its
// type, mode, owner, size, time and checksum; Installer compares it with
// the Payload and records it as the receipt. The file is big-endian:
//
//	header (512 bytes): "BOMStore", version 1, the number of non-null
//	    blocks, then offset and length of the block table and of the
//	    named-block list
//	blocks: the data, addressed by index into the block table
//	block table: count, then (offset, length) per block, block 0 null;
//	    then the free list: count and (offset, length) pairs
//	named blocks: count, then per name its block index, name length and
//	    name: BomInfo, Paths, HLIndex, VIndex, Size64
//
// Paths is a B-tree ("tree" header, then leaf nodes of key and value block
// indices): the key of each path holds its sequence number and the index
// of its metadata, the value its parent's sequence number and its name.
// Three details that readers depend on: the paths are in breadth-first
// order, numbered from 1; the tree header and BomInfo carry the path
// count; and the block table is allocated in whole runs of 256 entries,
// unused ones zero, as Apple's mkbom leaves it.

const (
	blockTableRun  = 256  // block table entries are allocated in runs of this many
	pathsBlockSize = 4096 // node size of the Paths and HLIndex trees
	smallBlockSize = 128  // node size of the Size64 and VIndex trees
)

// Metadata entry types.
const (
	typeFile = 1
	typeDir  = 2
	typeLink = 3
)

// Binary types in the metadata flags.
const (
	binPlain = 0
	binExec  = 1
	binFat   = 2
)

type bomBlocks struct{ data [][]byte }

func (b *bomBlocks) add(p []byte) uint32 {
	b.data = append(b.data, p)
	return uint32(len(b.data) - 1)
}

// tree writes a B-tree of key/value block index pairs and returns the
// index of its "tree" header block.
func (b *bomBlocks) tree(nodeSize uint32, keys, values []uint32) uint32 {
	perLeaf := int(nodeSize-12) / 8
	var leaves []uint32
	var lastValue []uint32
	for start := 0; start == 0 || start < len(keys); start += perLeaf {
		end := min(start+perLeaf, len(keys))
		leaves = append(leaves, b.add(nil)) // filled in below, once the neighbours are known
		if end > start {
			lastValue = append(lastValue, values[end-1])
		} else {
			lastValue = append(lastValue, 0)
		}
	}
	for i, idx := range leaves {
		start := i * perLeaf
		end := min(start+perLeaf, len(keys))
		var fwd, back uint32
		if i+1 < len(leaves) {
			fwd = leaves[i+1]
		}
		if i > 0 {
			back = leaves[i-1]
		}
		b.data[idx] = node(nodeSize, true, fwd, back, keys[start:end], values[start:end])
	}
	root := leaves[0]
	if len(leaves) > 1 {
		// One index node above the leaves: key = leaf, value = the last
		// value in that leaf.
		root = b.add(node(nodeSize, false, 0, 0, leaves, lastValue))
	}
	var t bytes.Buffer
	t.WriteString("tree")
	be(&t, uint32(1), root, nodeSize, uint32(len(keys)), uint8(0))
	return b.add(t.Bytes())
}

func node(size uint32, leaf bool, fwd, back uint32, keys, values []uint32) []byte {
	var n bytes.Buffer
	isLeaf := uint16(0)
	if leaf {
		isLeaf = 1
	}
	be(&n, isLeaf, uint16(len(keys)), fwd, back)
	for i := range keys {
		be(&n, keys[i], values[i])
	}
	out := make([]byte, size)
	copy(out, n.Bytes())
	return out
}

func be(w *bytes.Buffer, vs ...any) {
	for _, v := range vs {
		binary.Write(w, binary.BigEndian, v)
	}
}

// BOM writes the Bill of Materials for a payload. The entries must be in
// Sort order, as for Archive.
func BOM(entries []Entry) ([]byte, error) {
	if _, err := Sort(entries); err != nil {
		return nil, err
	}
	b := &bomBlocks{data: [][]byte{nil}} // block 0 is the null block
	seq := map[string]uint32{}
	var keys, values []uint32
	info := map[uint32]uint32{} // cpu type -> total size
	for i := range entries {
		e := &entries[i]
		id := uint32(i + 1)
		seq[e.Path] = id
		meta, err := metadata(e, info)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Path, err)
		}
		var k, v bytes.Buffer
		be(&k, id, b.add(meta))
		parent, name := uint32(0), "."
		if e.Path != "." {
			dir, base := splitPath(e.Path)
			parent, name = seq[dir], base
		}
		be(&v, parent)
		v.WriteString(name)
		v.WriteByte(0)
		keys = append(keys, b.add(k.Bytes()))
		values = append(values, b.add(v.Bytes()))
	}

	var bomInfo bytes.Buffer
	cpus := make([]uint32, 0, len(info))
	for c := range info {
		cpus = append(cpus, c)
	}
	sort.Slice(cpus, func(i, j int) bool { return cpus[i] < cpus[j] })
	be(&bomInfo, uint32(1), uint32(len(entries)), uint32(len(cpus)))
	for _, c := range cpus {
		be(&bomInfo, c, uint32(0), info[c], uint32(0))
	}
	var vindex bytes.Buffer
	be(&vindex, uint32(1), b.tree(smallBlockSize, nil, nil), uint32(0), uint8(1))

	named := []struct {
		name  string
		index uint32
	}{
		{"BomInfo", b.add(bomInfo.Bytes())},
		{"Paths", b.tree(pathsBlockSize, keys, values)},
		{"HLIndex", b.tree(pathsBlockSize, nil, nil)},
		{"VIndex", b.add(vindex.Bytes())},
		{"Size64", b.tree(smallBlockSize, nil, nil)},
	}

	// Lay out: header, blocks, named blocks, block table.
	var body bytes.Buffer
	body.Write(make([]byte, 512))
	type ptr struct{ off, n uint32 }
	ptrs := make([]ptr, len(b.data))
	for i, d := range b.data {
		if i == 0 {
			continue
		}
		ptrs[i] = ptr{uint32(body.Len()), uint32(len(d))}
		body.Write(d)
	}
	varsOff := uint32(body.Len())
	be(&body, uint32(len(named)))
	for _, n := range named {
		be(&body, n.index, uint8(len(n.name)))
		body.WriteString(n.name)
	}
	varsLen := uint32(body.Len()) - varsOff
	indexOff := uint32(body.Len())
	slots := (len(ptrs) + blockTableRun - 1) / blockTableRun * blockTableRun
	be(&body, uint32(slots))
	for i := 0; i < slots; i++ {
		if i < len(ptrs) {
			be(&body, ptrs[i].off, ptrs[i].n)
		} else {
			be(&body, uint32(0), uint32(0))
		}
	}
	be(&body, uint32(2), uint64(0), uint64(0)) // free list: two empty entries
	indexLen := uint32(body.Len()) - indexOff

	out := body.Bytes()
	var h bytes.Buffer
	h.WriteString("BOMStore")
	be(&h, uint32(1), uint32(len(b.data)-1), indexOff, indexLen, varsOff, varsLen)
	copy(out, h.Bytes())
	return out, nil
}

func splitPath(p string) (dir, base string) {
	i := len(p) - 1
	for i >= 0 && p[i] != '/' {
		i--
	}
	return p[:i], p[i+1:]
}

// metadata is a path's metadata block; it adds the path's size to the
// per-CPU totals of BomInfo.
func metadata(e *Entry, info map[uint32]uint32) ([]byte, error) {
	var m bytes.Buffer
	typ := uint8(typeFile)
	switch {
	case e.Mode.IsDir():
		typ = typeDir
	case e.Mode&fs.ModeSymlink != 0:
		typ = typeLink
	case !e.Mode.IsRegular():
		return nil, fmt.Errorf("unsupported file type %s", e.Mode.Type())
	}
	var arches []arch
	bin := uint16(binPlain)
	if typ == typeFile {
		var fat bool
		arches, fat = machoArches(e.Data)
		if fat {
			bin = binFat
		} else if len(arches) == 1 {
			bin = binExec
		}
	}
	be(&m, typ, uint8(1), uint16(bin<<12|0xf), uint16(e.unixMode()), e.UID, e.GID, e.MTime, e.size(), uint8(1))
	switch typ {
	case typeFile:
		be(&m, cksum(e.Data))
		if len(arches) > 0 {
			be(&m, uint8(1), uint32(len(arches)))
			for _, a := range arches {
				be(&m, a.cpu, a.sub, a.size, a.sum)
				info[a.cpu] += a.size
			}
		} else {
			info[0] += e.size()
		}
	case typeLink:
		be(&m, cksum([]byte(e.Target)), uint32(len(e.Target)+1))
		m.WriteString(e.Target)
		m.WriteByte(0)
		info[0] += e.size()
	case typeDir:
		info[0] += 0
	}
	m.Write(make([]byte, 8))
	return m.Bytes(), nil
}

type arch struct{ cpu, sub, size, sum uint32 }

// machoArches lists the architectures of a Mach-O file (thin or
// universal); none for anything else.
func machoArches(data []byte) (arches []arch, fat bool) {
	if ff, err := macho.NewFatFile(bytes.NewReader(data)); err == nil {
		for _, a := range ff.Arches {
			slice := data[a.Offset : a.Offset+a.Size]
			arches = append(arches, arch{uint32(a.Cpu), a.SubCpu, a.Size, cksum(slice)})
		}
		return arches, true
	}
	if f, err := macho.NewFile(bytes.NewReader(data)); err == nil {
		return []arch{{uint32(f.Cpu), f.SubCpu, uint32(len(data)), cksum(data)}}, false
	}
	return nil, false
}

// cksum is the POSIX cksum CRC (what macOS's cksum prints): CRC-32 with
// polynomial 0x04C11DB7, most significant bit first, over the data and
// then its length, complemented.
func cksum(data []byte) uint32 {
	var crc uint32
	step := func(b byte) {
		crc ^= uint32(b) << 24
		for i := 0; i < 8; i++ {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04C11DB7
			} else {
				crc <<= 1
			}
		}
	}
	for _, b := range data {
		step(b)
	}
	for n := len(data); n > 0; n >>= 8 {
		step(byte(n))
	}
	return ^crc
}
