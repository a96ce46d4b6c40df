/*
 * Test equipment only, never shipped: a stand-in for Windows'
 * bcryptprimitives.dll, which Wine 8 (Debian 12) lacks. Go 1.22 and later
 * draw random bytes from its ProcessPrng at start-up; this forwards to
 * RtlGenRandom (advapi32's SystemFunction036), which Wine has.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T size)
{
	while (size > 0) {
		ULONG n = size > 0x10000000 ? 0x10000000 : (ULONG)size;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		size -= n;
	}
	return TRUE;
}
