/** Estimating the number of nodes in the DHT from how close the K closest nodes to a target are. Pure. */
import { distanceFraction, type NodeId } from "./id.ts";

/**
 * With N nodes spread uniformly, the i-th closest node to a random target lies at about i/N of the id
 * space. A least-squares fit of d_i = i / N over the K closest gives N = Σi² / Σ(i·d_i).
 */
export function estimateNetworkSize(target: NodeId, closestIds: NodeId[]): number {
  let sumSquares = 0;
  let sumWeighted = 0;
  closestIds.forEach((id, index) => {
    const i = index + 1;
    sumSquares += i * i;
    sumWeighted += i * distanceFraction(target, id);
  });
  if (sumWeighted === 0) return closestIds.length;
  return Math.max(closestIds.length, sumSquares / sumWeighted);
}
