export { buildPage, type ServedPage, servePage, webRoot } from './serve.ts';
