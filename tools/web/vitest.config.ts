import shared from '../../vitest.shared.ts';

// The page's tests drive a real Chromium and simulated boards; the shared limit leaves a loaded
// 2-core CI machine room for them.
export default shared;
