import shared from '../../vitest.shared.ts';

// Scans wait out their own timeouts on purpose; the shared limit leaves room for them.
export default shared;
