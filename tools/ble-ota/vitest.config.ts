import shared from '../../vitest.shared.ts';

// End-to-end tests start simulated boards (device processes, ptys); the shared limit leaves a
// loaded 2-core CI machine room for what takes one second here.
export default shared;
